# store/: chunk hashing, compression, object backends, atomic files.
noinst_LTLIBRARIES += store/libstore.la
store_libstore_la_SOURCES = \
	store/store.h store/objstore.h \
	store/objstore-dir.c \
	store/dirsync.c store/dirsync.h \
	store/chunk.c store/chunk.h \
	store/crypt.c store/crypt.h store/key.c store/paper.c \
	store/store-config.c store/store-config.h \
	store/store.c
store_libstore_la_LIBADD = common/libcommon.la

check_PROGRAMS += store/test-store store/test-corrupt store/test-objstore \
	store/test-crypt store/test-key
TESTS += store/test-store store/test-corrupt store/test-objstore \
	store/test-crypt store/test-key
store_test_store_SOURCES = store/test-store.c store/test-common.h
store_test_store_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
store_test_corrupt_SOURCES = store/test-corrupt.c store/test-common.h
store_test_corrupt_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
store_test_objstore_SOURCES = store/test-objstore.c store/test-common.h
store_test_objstore_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
store_test_crypt_SOURCES = store/test-crypt.c store/test-common.h
store_test_crypt_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
store_test_key_SOURCES = store/test-key.c store/test-common.h
store_test_key_LDADD = store/libstore.la common/libcommon.la \
	$(LIBZSTD_LIBS) $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
