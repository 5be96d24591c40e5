# mk/store.mk: call records in PostgreSQL and live state in Redis. The store's spool
# (write-ahead log), its applier and live state; libpq and hiredis helpers on libevent;
# assistants and numbers from the database for the brokers and the api workers;
# `voxbridge migrate` and the numbered migrations it applies (installed to
# $(pkgdatadir)/sql). store/store.c itself is listed with the roles (mk/roles.mk).
libvb_a_SOURCES += common/pg.c common/pg.h common/redisc.c common/redisc.h \
	store/spool.c store/spool.h store/records.c store/records.h \
	store/apply.c store/apply.h store/live.c store/live.h \
	broker/assistants.c broker/assistants.h api/db.c api/db.h \
	master/migrate.c master/migrate.h

sqldir = $(pkgdatadir)/sql
dist_sql_DATA = sql/001_init.sql sql/002_turn_taking.sql sql/003_cut_replies.sql

check_PROGRAMS += tests/unit/test_store
TESTS += tests/unit/test_store
tests_unit_test_store_SOURCES = tests/unit/test_store.c
tests_unit_test_store_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_store_LDADD = $(VB_TEST_LIBS)
