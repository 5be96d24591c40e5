/* One call in a media worker: the Media Streams WebSocket, its DSP state, its
 * shm slot, and the 20 ms pump between them. */
#ifndef VB_WORKER_CALL_H
#define VB_WORKER_CALL_H

#include <stdint.h>

struct event_base;
typedef struct vb_worker vb_worker_t;
typedef struct vb_call vb_call_t;

/* Take the accepted connection FD for slot SLOT at generation GEN. */
vb_call_t *vb_call_new(vb_worker_t *w, int fd, uint32_t slot, uint32_t gen);

/* Worker hooks the call uses (worker.c). */
struct event_base *vb_worker_base(vb_worker_t *w);
void vb_worker_call_ended(vb_worker_t *w, uint32_t slot, uint32_t gen, int failed);

#endif
