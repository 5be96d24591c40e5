# mk/voice.mk: the offline voice in the AI broker: local TTS (espeak-ng), local
# STT (pocketsphinx), the intents matcher and the `local` dialogue engine.
# espeak-ng and pocketsphinx come from configure.ac (ESPEAK_*, POCKETSPHINX_*),
# already part of AM_CFLAGS and VB_LIBS.
libvb_a_SOURCES += broker/intents.c broker/intents.h \
	broker/tts_local.c broker/tts_local.h
libvb_a_SOURCES += broker/stt_local.c broker/stt_local.h
