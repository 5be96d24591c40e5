# shm/: the shared region, its slot table and the SPSC rings (every role).
libvb_a_SOURCES += shm/ring.c shm/ring.h shm/ring_layout.h \
	shm/shm.c shm/shm.h shm/slot_layout.h shm/bell.c shm/bell.h

check_PROGRAMS += tests/unit/test_ring tests/unit/test_shm
TESTS += tests/unit/test_ring tests/unit/test_shm
tests_unit_test_ring_SOURCES = tests/unit/test_ring.c
tests_unit_test_ring_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_ring_LDADD = $(VB_TEST_LIBS)
tests_unit_test_shm_SOURCES = tests/unit/test_shm.c
tests_unit_test_shm_CFLAGS = $(VB_TEST_CFLAGS)
tests_unit_test_shm_LDADD = $(VB_TEST_LIBS)
