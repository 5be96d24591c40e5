# The roles (master, worker, broker, store, api) and the voxbridge binary.
libvb_a_SOURCES += common/role.h \
	master/master.c master/master.h master/master_int.h master/children.c \
	master/dispatch.c master/fdbudget.c master/listen.c master/listen.h master/notify.c \
	master/notify.h master/proctitle.c master/proctitle.h
sbin_PROGRAMS += voxbridge
voxbridge_SOURCES = master/main.c
voxbridge_LDADD = $(VB_LIBS)
libvb_a_SOURCES += worker/worker.c worker/call.c worker/call.h worker/call_int.h worker/pump.c \
	broker/broker.c broker/engine.h broker/echo.c store/store.c \
	api/api.c api/api.h api/peers.c api/peers.h api/twilio_hooks.c api/health.c
