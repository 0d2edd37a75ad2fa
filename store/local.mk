# store/: chunk hashing, compression, object backends, atomic files.
noinst_LTLIBRARIES += store/libstore.la
store_libstore_la_SOURCES = \
	store/store.h store/objstore.h \
	store/objstore-dir.c \
	store/chunk.c store/chunk.h \
	store/store.c
store_libstore_la_LIBADD = common/libcommon.la

check_PROGRAMS += store/test-store store/test-objstore
TESTS += store/test-store store/test-objstore
store_test_store_SOURCES = store/test-store.c
store_test_store_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
store_test_objstore_SOURCES = store/test-objstore.c
store_test_objstore_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
