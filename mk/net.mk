# mk/net.mk: the edge - HTTP/1.1 server, WebSocket server and client, TLS.
libvb_a_SOURCES += common/http.c common/http.h common/httpd.c common/httpd.h \
	common/ws.c common/ws.h common/tls.c common/tls.h common/linger.c common/linger.h

check_PROGRAMS += tests/unit/test_http tests/unit/test_httpd tests/unit/test_ws
TESTS += tests/unit/test_http tests/unit/test_httpd tests/unit/test_ws
tests_unit_test_http_SOURCES = tests/unit/test_http.c
tests_unit_test_http_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_http_LDADD = $(VB_TEST_LIBS)
tests_unit_test_httpd_SOURCES = tests/unit/test_httpd.c tests/unit/net_testutil.c \
	tests/unit/net_testutil.h
tests_unit_test_httpd_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_httpd_LDADD = $(VB_TEST_LIBS)
tests_unit_test_ws_SOURCES = tests/unit/test_ws.c tests/unit/net_testutil.c \
	tests/unit/net_testutil.h
tests_unit_test_ws_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_ws_LDADD = $(VB_TEST_LIBS)

# libFuzzer targets (not built by default): `make fuzz` (or fuzz-net) builds them
# with clang, `make fuzz-net-replay` runs each over its seed corpus once (CI),
# `make fuzz-net-run NET_FUZZ_SECONDS=60` fuzzes each for that long.
NET_FUZZERS = fuzz_http_request fuzz_ws_frame
EXTRA_DIST += tests/fuzz/fuzz_http_request.c tests/fuzz/fuzz_ws_frame.c \
	tests/fuzz/corpus/fuzz_http_request tests/fuzz/corpus/fuzz_ws_frame
NET_FUZZ_CC = clang
NET_FUZZ_SECONDS = 60
NET_FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-std=c11 -D_GNU_SOURCE -I$(top_srcdir) -I$(top_builddir) \
	$(LIBEVENT_CFLAGS) $(OPENSSL_CFLAGS)
NET_FUZZ_LIBS = $(LIBEVENT_LIBS) $(OPENSSL_LIBS) $(WSLAY_LIBS)
NET_WS_FUZZ_SRCS = common/ws.c common/httpd.c common/http.c common/tls.c common/log.c \
	common/stats.c
CLEANFILES += tests/fuzz/fuzz_http_request tests/fuzz/fuzz_ws_frame

tests/fuzz/fuzz_http_request: $(srcdir)/tests/fuzz/fuzz_http_request.c $(srcdir)/common/http.c \
		$(srcdir)/common/http.h
	@$(MKDIR_P) tests/fuzz
	$(NET_FUZZ_CC) $(NET_FUZZ_CFLAGS) -o $@ $(srcdir)/tests/fuzz/fuzz_http_request.c \
	  $(srcdir)/common/http.c

tests/fuzz/fuzz_ws_frame: $(srcdir)/tests/fuzz/fuzz_ws_frame.c $(NET_WS_FUZZ_SRCS:%=$(srcdir)/%)
	@$(MKDIR_P) tests/fuzz
	$(NET_FUZZ_CC) $(NET_FUZZ_CFLAGS) -o $@ $(srcdir)/tests/fuzz/fuzz_ws_frame.c \
	  $(NET_WS_FUZZ_SRCS:%=$(srcdir)/%) $(NET_FUZZ_LIBS)

fuzz-net: tests/fuzz/fuzz_http_request tests/fuzz/fuzz_ws_frame
fuzz: fuzz-net

fuzz-net-replay: fuzz-net
	for f in $(NET_FUZZERS); do \
	  tests/fuzz/$$f -runs=0 $(srcdir)/tests/fuzz/corpus/$$f || exit 1; done

fuzz-net-run: fuzz-net
	for f in $(NET_FUZZERS); do mkdir -p tests/fuzz/corpus-new/$$f; \
	  tests/fuzz/$$f -max_total_time=$(NET_FUZZ_SECONDS) tests/fuzz/corpus-new/$$f \
	    $(srcdir)/tests/fuzz/corpus/$$f || exit 1; done

.PHONY: fuzz fuzz-net fuzz-net-replay fuzz-net-run
