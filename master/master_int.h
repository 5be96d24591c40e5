/* The master's own state, shared by master.c, children.c and dispatch.c. */
#ifndef VB_MASTER_MASTER_INT_H
#define VB_MASTER_MASTER_INT_H

#include "common/linger.h"
#include "master/master.h"
#include "shm/shm.h"

#include <event2/event.h>
#include <event2/listener.h>

/* Refused connections the master keeps reading until the client stops sending
 * (common/linger.h); counted in its open-files budget. */
#define VB_MASTER_LINGER_MAX 16

typedef struct {
    double next_at;  /* monotonic seconds before which it is not restarted */
    int crashes;     /* consecutive quick crashes, for the backoff */
    int pending;     /* waiting for its backoff to pass */
} vb_respawn_t;

struct vb_master {
    vb_conf_t *conf;
    unsigned conf_gen;
    struct event_base *base;
    int listen_fd[2];
    struct evconnlistener *listener[2];
    vb_shm_t *shm;
    int death_pipe[2];   /* children watch [0]; only the master holds [1] */
    vb_child_t *children[VB_MAX_CHILDREN];
    int nchildren;
    vb_respawn_t respawn[VB_ROLE__COUNT][256];
    uint32_t *slot_owner_pid; /* slot -> worker pid (0 = free), master-local */
    double *slot_ended_at;    /* when the worker said DONE, for the ack timeout */
    int api_rr;
    int api_cap_auto;    /* api_max_connections when the key is 0 (set at start) */
    long fd_limit;       /* RLIMIT_NOFILE at start */
    int file_workers_max, file_slots; /* as the file said, before the fd budget (fdbudget.c) */
    int spare_fd;        /* given up to answer 503 when accept() finds no free descriptor */
    int accept_paused;   /* listeners disabled until the next tick (no spare either) */
    vb_linger_t *linger; /* refused connections closing; NULL: closed at once */
    int inflight_fd;     /* the connection being dispatched, -1: none (a child forked
                            meanwhile must not keep it) */
    int stopping;        /* 1 graceful (SIGTERM), 2 fast (SIGQUIT) */
    double stop_deadline;
    struct event *tick_ev;
    struct event *sig_ev[6];
};

double vb_now(void);
/* The open-files budget (fdbudget.c): fit the pool at start (-1: cannot run
 * even one call), the api connection cap, the refit of a reloaded config. */
int vb_master_fit_fds(vb_master_t *m);
int vb_master_api_cap(const vb_master_t *m);
void vb_master_log_api_cap(const vb_master_t *m);
void vb_master_refit(const vb_master_t *m, vb_conf_t *next);
vb_child_t *vb_master_find_pid(vb_master_t *m, pid_t pid);

#endif
