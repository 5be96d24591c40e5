# mk/voice.mk: the offline voice in the AI broker: local TTS (espeak-ng), local
# STT (pocketsphinx), the intents matcher and the `local` dialogue engine.
# espeak-ng and pocketsphinx come from configure.ac (ESPEAK_*, POCKETSPHINX_*),
# already part of AM_CFLAGS and VB_LIBS.
libvb_a_SOURCES += broker/intents.c broker/intents.h \
	broker/tts_local.c broker/tts_local.h
libvb_a_SOURCES += broker/stt_local.c broker/stt_local.h

VOICE_TEST_CPPFLAGS = $(AM_CPPFLAGS) -DVB_TEST_DATA='"$(abs_top_srcdir)/tests/data"'
VOICE_TESTS = tests/unit/test_intents tests/unit/test_tts_local tests/unit/test_stt_local
check_PROGRAMS += $(VOICE_TESTS)
TESTS += $(VOICE_TESTS)
tests_unit_test_stt_local_SOURCES = tests/unit/test_stt_local.c \
	tests/unit/voice_testutil.c tests/unit/voice_testutil.h
tests_unit_test_stt_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_stt_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_stt_local_LDADD = $(VB_TEST_LIBS)
tests_unit_test_intents_SOURCES = tests/unit/test_intents.c \
	tests/unit/voice_testutil.c tests/unit/voice_testutil.h
tests_unit_test_intents_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_intents_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_intents_LDADD = $(VB_TEST_LIBS)
tests_unit_test_tts_local_SOURCES = tests/unit/test_tts_local.c \
	tests/unit/voice_testutil.c tests/unit/voice_testutil.h
tests_unit_test_tts_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_tts_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_tts_local_LDADD = $(VB_TEST_LIBS)
libvb_a_SOURCES += broker/transcript.c broker/transcript.h broker/local.c broker/local.h
VOICE_TESTS += tests/unit/test_local
check_PROGRAMS += tests/unit/test_local
TESTS += tests/unit/test_local
tests_unit_test_local_SOURCES = tests/unit/test_local.c \
	tests/unit/voice_testutil.c tests/unit/voice_testutil.h
tests_unit_test_local_CPPFLAGS = $(VOICE_TEST_CPPFLAGS)
tests_unit_test_local_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_local_LDADD = $(VB_TEST_LIBS)
