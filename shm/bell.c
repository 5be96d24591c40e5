/* Doorbells in an event loop: see bell.h. */
#include "shm/bell.h"
#include "shm/shm.h"

static int bells_level; /* set when some base could not do edge-triggered events */

struct event *vb_bell_event_new(struct event_base *base, int fd, event_callback_fn cb, void *arg)
{
    short how = EV_READ | EV_PERSIST;
    if (event_base_get_features(base) & EV_FEATURE_ET) {
        how |= EV_ET;
    } else {
        bells_level = 1;
    }
    return event_new(base, fd, how, cb, arg);
}

void vb_bell_ack(int fd)
{
    if (bells_level) {
        vb_shm_bell_drain(fd);
    }
}
