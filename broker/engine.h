/* A conversation engine in the AI broker: what answers the caller on one call.
 * Each assistant mode is a table of these functions (echo now; the local
 * voice and the provider pipelines next). Run by the broker only. */
#ifndef VB_BROKER_ENGINE_H
#define VB_BROKER_ENGINE_H

#include "common/conf.h"
#include "shm/shm.h"

typedef struct vb_conv vb_conv_t;

typedef struct {
    const char *name;
    int (*attach)(vb_conv_t *c);                                 /* 0 or -errno */
    void (*on_audio)(vb_conv_t *c, const vb_audio_frame_t *f);    /* one caller frame */
    void (*on_ctl)(vb_conv_t *c, const vb_ctl_msg_t *m);          /* dtmf, mark, barge-in */
    void (*tick)(vb_conv_t *c, uint64_t now_ns);                  /* every 20 ms */
    void (*detach)(vb_conv_t *c);                                 /* free what attach made */
} vb_engine_t;

/* A call as the broker sees it. */
struct vb_conv {
    vb_shm_t *shm;
    uint32_t slot_idx;
    vb_slot_t *slot;
    uint32_t gen;
    int attached;
    uint64_t fresh_after_ns; /* caller audio from before this is stale (see conv_attach) */
    vb_assistant_t asst; /* copied at attach: a reload does not change a running call */
    const vb_engine_t *engine;
    void *state;
};

extern const vb_engine_t vb_engine_echo;
extern const vb_engine_t vb_engine_local; /* broker/local.c: intents and the offline voice */

/* Push one frame of agent audio to the worker; -ENOSPC when the ring is full. */
int vb_conv_play(vb_conv_t *c, const vb_audio_frame_t *f);
/* Send a control message to the worker. */
void vb_conv_ctl(vb_conv_t *c, uint32_t type, const char *text);
uint64_t vb_broker_now_ns(void);

#endif
