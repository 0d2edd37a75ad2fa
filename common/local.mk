# common/: errors, cleanup helpers, small utilities.
noinst_LTLIBRARIES += common/libcommon.la
common_libcommon_la_SOURCES = \
	common/errors.c common/errors.h \
	common/cleanup.h common/test.h \
	common/util.c common/proc.c common/proc.h common/util.h

check_PROGRAMS += common/test-util
TESTS += common/test-util
common_test_util_SOURCES = common/test-util.c
common_test_util_LDADD = common/libcommon.la $(LIBCRYPTO_LIBS) $(JSONC_LIBS)
