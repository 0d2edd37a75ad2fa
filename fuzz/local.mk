# fuzz/: libFuzzer targets for every decoder of on-disk data (container,
# map nodes, point records, store config, key files, paper keys) and for
# the extent-plan builder; see fuzz/fuzz.h and README.md ("Fuzzing").
#
# Normal build: each target is linked with fuzz/driver.c (replay of
# fuzz/corpus/NAME plus FUZZ_RUNS deterministic mutations) and runs as a
# test of make check (and under valgrind in make check-valgrind).
# ./configure --enable-fuzzing (clang): the targets get libFuzzer's main
# instead, and the whole tree is instrumented; build them with make fuzz.
FUZZ_TARGETS = fuzz/fuzz-chunk fuzz/fuzz-maptree fuzz/fuzz-record \
	fuzz/fuzz-config fuzz/fuzz-key fuzz/fuzz-paper fuzz/fuzz-plan

if FUZZING
FUZZ_MAIN =
FUZZ_LINK = -fsanitize=fuzzer
EXTRA_PROGRAMS += $(FUZZ_TARGETS)
CLEANFILES += $(FUZZ_TARGETS)
else
FUZZ_MAIN = fuzz/driver.c
FUZZ_LINK =
check_PROGRAMS += $(FUZZ_TARGETS)
TESTS += $(FUZZ_TARGETS)
endif

fuzz: $(FUZZ_TARGETS)
.PHONY: fuzz

FUZZ_COMMON = fuzz/fuzz.h fuzz/common.c $(FUZZ_MAIN)
FUZZ_STORE_LIBS = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)

fuzz_fuzz_chunk_SOURCES = fuzz/fuzz-chunk.c $(FUZZ_COMMON)
fuzz_fuzz_chunk_LDADD = $(FUZZ_STORE_LIBS)
fuzz_fuzz_chunk_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_config_SOURCES = fuzz/fuzz-config.c $(FUZZ_COMMON)
fuzz_fuzz_config_LDADD = $(FUZZ_STORE_LIBS)
fuzz_fuzz_config_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_key_SOURCES = fuzz/fuzz-key.c $(FUZZ_COMMON)
fuzz_fuzz_key_LDADD = $(FUZZ_STORE_LIBS)
fuzz_fuzz_key_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_paper_SOURCES = fuzz/fuzz-paper.c $(FUZZ_COMMON)
fuzz_fuzz_paper_LDADD = $(FUZZ_STORE_LIBS)
fuzz_fuzz_paper_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_maptree_SOURCES = fuzz/fuzz-maptree.c $(FUZZ_COMMON)
fuzz_fuzz_maptree_LDADD = libpullback.la
fuzz_fuzz_maptree_LDFLAGS = $(FUZZ_LINK)
fuzz_fuzz_record_SOURCES = fuzz/fuzz-record.c $(FUZZ_COMMON)
fuzz_fuzz_record_LDADD = libpullback.la
fuzz_fuzz_record_LDFLAGS = $(FUZZ_LINK)
# reader/plan.c on its own, with fuzz-plan.c's stubs of reader/nbd.c and of
# libnbd's nbd_block_status (so no libnbd, no libreader).  Own CFLAGS so
# its objects are not confused with libreader's.
fuzz_fuzz_plan_SOURCES = fuzz/fuzz-plan.c reader/plan.c $(FUZZ_COMMON)
fuzz_fuzz_plan_CFLAGS = $(AM_CFLAGS)
fuzz_fuzz_plan_LDADD = common/libcommon.la $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
fuzz_fuzz_plan_LDFLAGS = $(FUZZ_LINK)

# Regenerate the seeds (make fuzz-corpus; see fuzz/gen-corpus.c).  Not
# part of any build: the seeds are committed.
EXTRA_PROGRAMS += fuzz/gen-corpus
CLEANFILES += fuzz/gen-corpus
fuzz_gen_corpus_SOURCES = fuzz/gen-corpus.c fuzz/fuzz.h fuzz/common.c
fuzz_gen_corpus_LDADD = libpullback.la
fuzz-corpus: fuzz/gen-corpus
	$(MKDIR_P) $(srcdir)/fuzz/corpus
	fuzz/gen-corpus $(srcdir)/fuzz/corpus
.PHONY: fuzz-corpus

EXTRA_DIST += fuzz/corpus fuzz/driver.c fuzz/json.dict
