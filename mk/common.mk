# common/: logging, configuration and small helpers used by every role.
libvb_a_SOURCES += common/clock.h common/log.c common/log.h common/conf.c common/conf.h common/role.c common/role.h common/stats.c common/stats.h common/chan.c common/chan.h common/calltoken.c common/calltoken.h

check_PROGRAMS += tests/unit/test_chan
TESTS += tests/unit/test_chan
tests_unit_test_chan_SOURCES = tests/unit/test_chan.c
tests_unit_test_chan_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_chan_LDADD = $(VB_TEST_LIBS)
