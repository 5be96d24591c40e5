# The roles (master, worker, broker, store, api) and the voxbridge binary.
sbin_PROGRAMS += voxbridge
voxbridge_SOURCES = master/main.c
voxbridge_LDADD = $(VB_LIBS)
