/* A media worker's call: state shared by call.c (connection, Media Streams
 * events) and pump.c (the 20 ms pump between the carrier and the rings). */
#ifndef VB_WORKER_CALL_INT_H
#define VB_WORKER_CALL_INT_H

#include "worker/call.h"
#include "common/role.h"
#include "shm/shm.h"
#include "worker/mstream.h"

#include <event2/event.h>

typedef struct vb_http_conn vb_http_conn_t;
typedef struct vb_ws vb_ws_t;
typedef struct vb_dsp vb_dsp_t;

#define VB_HOLD_TONE_BYTES 8000 /* one second of the holding tone, 8 kHz mu-law */

struct vb_call {
    vb_worker_t *w;
    const vb_child_ctx_t *ctx;
    uint32_t slot_idx, gen;
    vb_slot_t *slot;
    vb_http_conn_t *http;
    vb_ws_t *ws;
    vb_dsp_t *dsp;
    struct event *tick_ev, *bell_ev;
    int started;     /* `start` received, slot active */
    int closing;     /* we asked the WebSocket to close */
    int failed;      /* ended in error */
    char end_reason[128]; /* copied: a broker's hangup text lives in a ring message */
    char call_id[64];
    char stream_sid[48];
    uint32_t in_seq;
    /* outbound pacing: the carrier plays everything sent by drain_at_ns */
    uint64_t drain_at_ns;
    uint64_t frames_sent;
    uint64_t last_mark_frames;
    uint64_t clear_floor; /* marks at or below this were flushed by a clear */
    /* the broker serving this slot, to notice when it dies */
    uint32_t broker_epoch;
    int32_t broker_pid;
    int holding;
    uint32_t hold_pos;
    vb_ms_msg_t msg; /* the message being handled; large, so not on the stack */
    char out[1024];  /* outbound message being built */
};

uint64_t vb_now_ns(void);
/* pump.c */
int vb_call_pump_start(vb_call_t *call);
void vb_call_pump_stop(vb_call_t *call);
void vb_call_pump_out(vb_call_t *call);
void vb_call_on_mark(vb_call_t *call, const char *name);
/* call.c */
void vb_call_event(vb_call_t *call, const char *type, const char *json_fields);
void vb_call_hangup(vb_call_t *call, int code, const char *reason);
const vb_child_ctx_t *vb_worker_ctx(vb_worker_t *w);

#endif
