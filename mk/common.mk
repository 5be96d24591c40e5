# common/: logging, configuration and small helpers used by every role.
libvb_a_SOURCES += common/log.c common/log.h common/conf.c common/conf.h common/stats.c common/stats.h common/chan.c common/chan.h common/calltoken.c common/calltoken.h
