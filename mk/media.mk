# mk/media.mk: audio codec and DSP, Twilio Media Streams messages, Twilio webhook
# signatures, form bodies and TwiML. Unit tests, a DSP benchmark and libFuzzer targets.
libvb_a_SOURCES += common/g711.c common/g711.h common/base64.c common/base64.h \
	worker/dsp.c worker/dsp.h worker/halfband.c worker/halfband.h \
	worker/mstream.c worker/mstream.h \
	api/form.c api/form.h api/twilio.c api/twilio.h

MEDIA_TESTS = tests/unit/test_g711 tests/unit/test_base64 tests/unit/test_dsp \
	tests/unit/test_mstream tests/unit/test_twilio
check_PROGRAMS += $(MEDIA_TESTS)
TESTS += $(MEDIA_TESTS)

tests_unit_test_g711_SOURCES = tests/unit/test_g711.c
tests_unit_test_g711_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_g711_LDADD = $(VB_TEST_LIBS)
tests_unit_test_base64_SOURCES = tests/unit/test_base64.c
tests_unit_test_base64_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_base64_LDADD = $(VB_TEST_LIBS)
tests_unit_test_dsp_SOURCES = tests/unit/test_dsp.c
tests_unit_test_dsp_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_dsp_LDADD = $(VB_TEST_LIBS)
tests_unit_test_mstream_SOURCES = tests/unit/test_mstream.c
tests_unit_test_mstream_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_mstream_LDADD = $(VB_TEST_LIBS)
tests_unit_test_twilio_SOURCES = tests/unit/test_twilio.c
tests_unit_test_twilio_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_twilio_LDADD = $(VB_TEST_LIBS)

# Built with the tree, run by hand: prints microseconds per 20 ms frame for each stage.
noinst_PROGRAMS += tests/bench/bench_dsp
tests_bench_bench_dsp_SOURCES = tests/bench/bench_dsp.c
tests_bench_bench_dsp_LDADD = $(VB_LIBS)

# libFuzzer targets, not built by default: `make fuzz-media` builds them with clang,
# `make fuzz-media-replay` runs each over its corpus once (what CI does),
# `make fuzz-media-run FUZZ_SECONDS=60` fuzzes each for that long.
FUZZ_CC = clang
FUZZ_SECONDS = 60
MEDIA_FUZZERS = fuzz_mstream fuzz_form_sig fuzz_base64 fuzz_g711_resample
MEDIA_FUZZ_CFLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-g -O1 -std=c11 -D_GNU_SOURCE -I$(top_srcdir) -I$(top_builddir) \
	$(JANSSON_CFLAGS) $(OPENSSL_CFLAGS) $(SPEEXDSP_CFLAGS)
MEDIA_FUZZ_LIBS = $(JANSSON_LIBS) $(OPENSSL_LIBS) $(SPEEXDSP_LIBS)
MEDIA_FUZZ_COMMON = common/base64.c common/stats.c
fuzz_mstream_SRCS = worker/mstream.c
fuzz_form_sig_SRCS = api/form.c api/twilio.c common/http.c
fuzz_base64_SRCS =
fuzz_g711_resample_SRCS = common/g711.c common/log.c worker/dsp.c worker/halfband.c

fuzz-media:
	@mkdir -p tests/fuzz
	@for f in $(MEDIA_FUZZERS); do \
	  case $$f in \
	    fuzz_mstream) srcs="$(fuzz_mstream_SRCS)";; \
	    fuzz_form_sig) srcs="$(fuzz_form_sig_SRCS)";; \
	    fuzz_base64) srcs="$(fuzz_base64_SRCS)";; \
	    fuzz_g711_resample) srcs="$(fuzz_g711_resample_SRCS)";; \
	  esac; \
	  echo "  FUZZ     tests/fuzz/$$f"; \
	  $(FUZZ_CC) $(MEDIA_FUZZ_CFLAGS) -o tests/fuzz/$$f $(srcdir)/tests/fuzz/$$f.c \
	    $$(for s in $$srcs $(MEDIA_FUZZ_COMMON); do echo $(srcdir)/$$s; done) \
	    $(MEDIA_FUZZ_LIBS) || exit 1; \
	done

fuzz-media-replay: fuzz-media
	@for f in $(MEDIA_FUZZERS); do \
	  tests/fuzz/$$f -runs=0 $(srcdir)/tests/fuzz/corpus/$$f || exit 1; \
	done

fuzz-media-run: fuzz-media
	@for f in $(MEDIA_FUZZERS); do \
	  mkdir -p tests/fuzz/corpus-new/$$f; \
	  dict=; test -f $(srcdir)/tests/fuzz/dicts/$$f.dict && dict=-dict=$(srcdir)/tests/fuzz/dicts/$$f.dict; \
	  tests/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) $$dict tests/fuzz/corpus-new/$$f \
	    $(srcdir)/tests/fuzz/corpus/$$f || exit 1; \
	done

EXTRA_DIST += tests/fuzz/fuzz_mstream.c tests/fuzz/dicts/fuzz_mstream.dict \
	tests/fuzz/fuzz_form_sig.c tests/fuzz/fuzz_base64.c \
	tests/fuzz/fuzz_g711_resample.c tests/fuzz/corpus/fuzz_mstream \
	tests/fuzz/corpus/fuzz_form_sig tests/fuzz/corpus/fuzz_base64 \
	tests/fuzz/corpus/fuzz_g711_resample

CLEANFILES += tests/fuzz/fuzz_mstream tests/fuzz/fuzz_form_sig tests/fuzz/fuzz_base64 \
	tests/fuzz/fuzz_g711_resample

.PHONY: fuzz-media fuzz-media-replay fuzz-media-run
