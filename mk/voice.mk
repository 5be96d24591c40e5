# mk/voice.mk: the offline voice of the AI broker and its `local` dialogue engine:
# local TTS (espeak-ng), local STT (pocketsphinx), the intents matcher, the compact
# transcript kept in the slot. espeak-ng and pocketsphinx come from configure.ac
# (ESPEAK_*, POCKETSPHINX_*), already in AM_CFLAGS and VB_LIBS.
libvb_a_SOURCES += broker/intents.c broker/intents.h \
	broker/tts_local.c broker/tts_local.h \
	broker/stt_local.c broker/stt_local.h \
	broker/transcript.c broker/transcript.h \
	broker/local.c broker/local.h

# Unit tests. test_stt_local is the accuracy test (30 caller lines through the phone
# path, >= 27 must reach the right intent); test_local drives the engine on a real slot
# in real time (~25 s).
VOICE_TEST_CPPFLAGS = $(AM_CPPFLAGS) -DVB_TEST_DATA='"$(abs_top_srcdir)/tests/data"'
VOICE_TEST_UTIL = tests/unit/voice_testutil.c tests/unit/voice_testutil.h
VOICE_TESTS = tests/unit/test_intents tests/unit/test_transcript tests/unit/test_tts_local \
	tests/unit/test_stt_local tests/unit/test_local
check_PROGRAMS += $(VOICE_TESTS)
TESTS += $(VOICE_TESTS)
EXTRA_DIST += tests/data/demo_intents.json

tests_unit_test_intents_SOURCES = tests/unit/test_intents.c $(VOICE_TEST_UTIL)
tests_unit_test_intents_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_intents_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_intents_LDADD = $(VB_TEST_LIBS)
tests_unit_test_transcript_SOURCES = tests/unit/test_transcript.c
tests_unit_test_transcript_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_transcript_LDADD = $(VB_TEST_LIBS)
tests_unit_test_tts_local_SOURCES = tests/unit/test_tts_local.c $(VOICE_TEST_UTIL)
tests_unit_test_tts_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_tts_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_tts_local_LDADD = $(VB_TEST_LIBS)
tests_unit_test_stt_local_SOURCES = tests/unit/test_stt_local.c $(VOICE_TEST_UTIL)
tests_unit_test_stt_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_stt_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_stt_local_LDADD = $(VB_TEST_LIBS)
tests_unit_test_local_SOURCES = tests/unit/test_local.c $(VOICE_TEST_UTIL)
tests_unit_test_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_local_LDADD = $(VB_TEST_LIBS)

# Built with the tree, run by hand: real-time factors, latencies and memory of the
# local voice, to size brokers (tests/bench/bench_voice [lines] [open-lm 0|1]).
noinst_PROGRAMS += tests/bench/bench_voice
tests_bench_bench_voice_SOURCES = tests/bench/bench_voice.c $(VOICE_TEST_UTIL)
tests_bench_bench_voice_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_bench_bench_voice_LDADD = $(VB_LIBS)
