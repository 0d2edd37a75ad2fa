# catalog/: the SQLite catalog.
noinst_LTLIBRARIES += catalog/libcatalog.la
catalog_libcatalog_la_SOURCES = \
	catalog/catalog.h \
	catalog/catalog.c \
	catalog/schema.c catalog/schema.h \
	catalog/points.c catalog/space.c catalog/garbage.c
catalog_libcatalog_la_LIBADD = common/libcommon.la

check_PROGRAMS += catalog/test-catalog
TESTS += catalog/test-catalog
catalog_test_catalog_SOURCES = catalog/test-catalog.c
catalog_test_catalog_LDADD = catalog/libcatalog.la common/libcommon.la $(SQLITE_LIBS)

check_PROGRAMS += catalog/test-space
TESTS += catalog/test-space
catalog_test_space_SOURCES = catalog/test-space.c
catalog_test_space_LDADD = catalog/libcatalog.la common/libcommon.la $(SQLITE_LIBS)
