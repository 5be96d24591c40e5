# voxbridge-callsim: the simulated Twilio (test tool and load generator). The pure parts
# (WAV, caller audio, speech synthesis, turn scheduler, playout/marks, statistics, TwiML,
# options) are also compiled into its unit test; the network parts use libvb's WebSocket client, Media Streams builders,
# form bodies and Twilio signatures.
CALLSIM_PURE = callsim/wav.c callsim/wav.h callsim/audio.c callsim/audio.h \
	callsim/playout.c callsim/playout.h callsim/stats.c callsim/stats.h \
	callsim/twiml.c callsim/twiml.h callsim/options.c callsim/options.h \
	callsim/speak.c callsim/speak.h callsim/conv.c callsim/conv.h
CALLSIM_NET = callsim/http.c callsim/http.h callsim/call.c callsim/stream.c \
	callsim/sim.c callsim/sim.h callsim/sim_int.h callsim/summary.c

bin_PROGRAMS += voxbridge-callsim
voxbridge_callsim_SOURCES = callsim/main.c $(CALLSIM_PURE) $(CALLSIM_NET)
voxbridge_callsim_LDADD = $(VB_LIBS)

check_PROGRAMS += tests/unit/test_callsim
TESTS += tests/unit/test_callsim
tests_unit_test_callsim_SOURCES = tests/unit/test_callsim.c tests/unit/net_testutil.c \
	tests/unit/net_testutil.h $(CALLSIM_PURE) $(CALLSIM_NET)
tests_unit_test_callsim_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_callsim_LDADD = $(VB_TEST_LIBS)
