/* What every child process is handed by the master at fork(): its role, the
 * config it started with, the shared memory and its channel. */
#ifndef VB_COMMON_ROLE_H
#define VB_COMMON_ROLE_H

#include <stddef.h>

#include "common/conf.h"

typedef struct vb_shm vb_shm_t;

typedef enum { VB_ROLE_WORKER, VB_ROLE_BROKER, VB_ROLE_STORE, VB_ROLE_API, VB_ROLE__COUNT } vb_role_t;

typedef struct {
    vb_role_t role;
    int index;            /* broker and api workers: which one */
    const vb_conf_t *conf;
    vb_shm_t *shm;
    int chan;             /* this child's end of the channel to the master */
    int death_fd;         /* read end of the parent-death pipe: EOF = master gone */
    unsigned conf_gen;
} vb_child_ctx_t;

const char *vb_role_name(vb_role_t role);

/* 1 when this process can still map BYTES of fresh address space. An
 * RLIMIT_AS or a short machine can stop a process half-way through setting up
 * a call or a connection (speexdsp and OpenSSL do not all check their
 * allocations): checked before taking one on, it can be refused with 503
 * instead. Maps and unmaps at once; touches no page. */
int vb_memory_headroom(size_t bytes);

/* Exit codes: the contract with the master (PostgreSQL postmaster style). */
enum {
    VB_EXIT_OK = 0,     /* ended cleanly */
    VB_EXIT_CLEAN = 1,  /* ended cleanly after an error it reported */
    VB_EXIT_CONFIG = 2, /* config or permission error: do not respawn */
};

int vb_worker_main(vb_child_ctx_t *ctx);
int vb_broker_main(vb_child_ctx_t *ctx);
int vb_store_main(vb_child_ctx_t *ctx);
int vb_api_main(vb_child_ctx_t *ctx);

#endif
