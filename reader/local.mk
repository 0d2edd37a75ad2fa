# reader/: the NBD side (nbd.c, plan.c) and the libpullback operations
# built on store/ and catalog/ (repo, maptree, backup, restore, verify).
noinst_LTLIBRARIES += reader/libreader.la
reader_libreader_la_SOURCES = \
	reader/pullback.h reader/nbd.h reader/internal.h \
	reader/nbd.c reader/plan.c \
	reader/repo.c reader/maptree.c reader/maptree.h \
	reader/backup.c reader/restore.c reader/verify.c reader/digest.c \
	reader/batch.c reader/idset.c reader/record.c \
	reader/space.c reader/gc.c reader/policy.c reader/policy.h \
	reader/rebuild.c reader/tmpfile.c reader/pipeline.c
reader_libreader_la_LIBADD = store/libstore.la catalog/libcatalog.la common/libcommon.la

check_PROGRAMS += reader/test-plan reader/test-maptree reader/test-policy \
	reader/test-pipeline
TESTS += reader/test-plan reader/test-maptree reader/test-policy \
	reader/test-pipeline
reader_test_pipeline_SOURCES = reader/test-pipeline.c
reader_test_pipeline_LDADD = libpullback.la
reader_test_policy_SOURCES = reader/test-policy.c
reader_test_policy_LDADD = libpullback.la
reader_test_plan_SOURCES = reader/test-plan.c
reader_test_plan_LDADD = libpullback.la
reader_test_maptree_SOURCES = reader/test-maptree.c
reader_test_maptree_LDADD = libpullback.la

# A fake NBD server sending malformed extents (forked by the test).
check_PROGRAMS += reader/test-extents
TESTS += reader/test-extents
reader_test_extents_SOURCES = reader/test-extents.c
reader_test_extents_LDADD = libpullback.la

# Benchmarks (not run by make check): bench/gc-scale.sh.
EXTRA_PROGRAMS = bench/gc-scale
bench_gc_scale_SOURCES = bench/gc-scale.c
bench_gc_scale_LDADD = libpullback.la
CLEANFILES += bench/gc-scale
