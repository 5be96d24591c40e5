/* The master process: owns the config, the listening sockets, the shared
 * memory and the child table; supervises and never parses a request. */
#ifndef VB_MASTER_MASTER_H
#define VB_MASTER_MASTER_H

#include "common/conf.h"
#include "common/role.h"

#include <stdint.h>
#include <sys/types.h>

#define VB_MAX_CHILDREN 8192
#define VB_SLOTS_PER_CHILD 64

typedef struct vb_child {
    pid_t pid;
    vb_role_t role;
    int index;           /* brokers, api workers, store: which one */
    int chan;            /* master's end of the channel */
    struct event *chan_ev;
    unsigned conf_gen;   /* config generation it was started with */
    int load;            /* media: calls; api: open connections */
    int quitting;        /* sent QUIT */
    uint32_t slots[VB_SLOTS_PER_CHILD];
    uint32_t slot_gens[VB_SLOTS_PER_CHILD];
    int nslots;
    double started;      /* monotonic seconds */
    int watchdog_killed; /* SIGKILLed by the watchdog, not reaped yet */
} vb_child_t;

typedef struct vb_master vb_master_t;

/* Run the master until it is told to stop. Returns the process exit code. */
int vb_master_run(vb_conf_t *conf);

/* Children (children.c). */
vb_child_t *vb_master_spawn(vb_master_t *m, vb_role_t role, int index);
void vb_master_reap(vb_master_t *m);
void vb_master_child_send(vb_master_t *m, vb_child_t *c, uint32_t type);
int vb_master_count(vb_master_t *m, vb_role_t role, int current_gen_only, int idle_only);
void vb_master_maintain_pool(vb_master_t *m);

/* Dispatch of accepted connections (dispatch.c). */
void vb_master_dispatch(vb_master_t *m, int fd, int listener);
void vb_master_slot_tick(vb_master_t *m);
/* Kill a broker or store whose heartbeat is older than watchdog_ms, and a
 * media worker that has not run its loop for one of its calls as long. */
void vb_master_watchdog(vb_master_t *m);
void vb_master_on_done(vb_master_t *m, vb_child_t *c, uint32_t slot, uint32_t gen, int failed);

#endif
