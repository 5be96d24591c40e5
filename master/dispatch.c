/* Hands each accepted connection to a child by SCM_RIGHTS: media connections
 * to a media worker with room for a call (with a fresh shm slot), the rest to
 * the least-busy api worker. When the pool is at its maximum the master itself
 * answers 503 with Retry-After: admission control, not a growing queue.
 * Also releases slots once the broker and the store have let go of them. */
#include "master/master_int.h"
#include "common/chan.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/stats.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLOT_RELEASE_TIMEOUT_S 10.0

static vb_child_t *pick_least_loaded(vb_master_t *m, vb_role_t role, int max_load)
{
    vb_child_t *best = NULL;
    for (int i = 0; i < m->nchildren; i++) {
        vb_child_t *c = m->children[i];
        if (c->role != role || c->quitting || c->conf_gen != m->conf_gen) {
            continue;
        }
        if (max_load > 0 && c->load >= max_load) {
            continue;
        }
        if (best == NULL || c->load < best->load) {
            best = c;
        }
    }
    return best;
}

static int find_free_slot(vb_master_t *m)
{
    uint32_t n = vb_shm_nslots(m->shm);
    for (uint32_t i = 0; i < n; i++) {
        if (m->slot_owner_pid[i] == 0 && m->slot_ended_at[i] == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Every api worker at its cap (idle or slow clients holding connections):
 * refuse here, before a worker runs out of file descriptors (its channel then
 * drops connections and it stops answering, health checks included). */
static void refuse_api(vb_master_t *m, int fd, int cap)
{
    static vb_log_limit_t limit;
    VB_STAT_INC(api_rejected_busy);
    if (vb_log_limit(&limit, 1, 10, NULL)) {
        vb_log(VB_LOG_WARN, "api connection refused with 503: every api worker holds %d "
               "connections (api_max_connections)", cap);
    }
    vb_linger_busy(m->linger, fd, "all api workers are at their connection limit");
}

static void dispatch_api(vb_master_t *m, int fd)
{
    int cap = vb_master_api_cap(m);
    vb_child_t *c = pick_least_loaded(m, VB_ROLE_API, cap);
    vb_chan_msg_t msg = {.type = VB_CHAN_CONN, .listener = VB_LISTENER_API};
    if (c == NULL || vb_chan_send(c->chan, &msg, fd) < 0) {
        refuse_api(m, fd, cap);
        return;
    }
    c->load++;
    close(fd);
}

static vb_child_t *media_worker_with_room(vb_master_t *m)
{
    vb_child_t *c = pick_least_loaded(m, VB_ROLE_WORKER, m->conf->calls_per_worker);
    if (c == NULL && vb_master_count(m, VB_ROLE_WORKER, 0, 0) < m->conf->workers_max) {
        c = vb_master_spawn(m, VB_ROLE_WORKER, 0);
    }
    return c;
}

static void dispatch_media(vb_master_t *m, int fd)
{
    vb_child_t *c = media_worker_with_room(m);
    int slot = c != NULL ? find_free_slot(m) : -1;
    if (c == NULL || slot < 0 || c->nslots == VB_SLOTS_PER_CHILD) {
        VB_STAT_INC(calls_rejected_busy);
        vb_log(VB_LOG_WARN, "media connection refused with 503: %s (%d)",
               c == NULL ? "pool at workers_max" : "no free slot",
               c == NULL ? m->conf->workers_max : m->conf->slots);
        vb_linger_busy(m->linger, fd, "all media workers are busy");
        return;
    }
    vb_slot_t *s = vb_shm_slot(m->shm, (uint32_t)slot);
    s->broker_index = (uint32_t)slot % (uint32_t)m->conf->brokers;
    uint32_t gen = vb_slot_assign(s);
    vb_chan_msg_t msg = {.type = VB_CHAN_CONN, .listener = VB_LISTENER_MEDIA,
                         .slot = (uint32_t)slot, .gen = gen};
    int rc = vb_chan_send(c->chan, &msg, fd);
    close(fd);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "handing a call to worker %d: %s", (int)c->pid, strerror(-rc));
        vb_slot_free(s);
        return;
    }
    m->slot_owner_pid[slot] = (uint32_t)c->pid;
    c->slots[c->nslots] = (uint32_t)slot;
    c->slot_gens[c->nslots++] = gen;
    c->load++;
    vb_master_maintain_pool(m);
}

void vb_master_dispatch(vb_master_t *m, int fd, int listener)
{
    m->inflight_fd = fd; /* a worker forked for this call closes its copy */
    if (listener == VB_LISTENER_MEDIA) {
        dispatch_media(m, fd);
    } else {
        dispatch_api(m, fd);
    }
    m->inflight_fd = -1;
}

void vb_master_on_done(vb_master_t *m, vb_child_t *c, uint32_t slot, uint32_t gen, int failed)
{
    for (int i = 0; i < c->nslots; i++) {
        if (c->slots[i] == slot && c->slot_gens[i] == gen) {
            c->slots[i] = c->slots[--c->nslots];
            c->slot_gens[i] = c->slot_gens[c->nslots];
            c->load--;
            m->slot_owner_pid[slot] = 0;
            m->slot_ended_at[slot] = vb_now();
            return;
        }
    }
    vb_log(VB_LOG_WARN, "worker %d reported slot %u gen %u it does not hold", (int)c->pid,
           slot, gen);
}

/* A slot whose call ended is reused only when the broker and the store have
 * let go of it (their acks reach its gen), or after a timeout. */
void vb_master_slot_tick(vb_master_t *m)
{
    uint32_t n = vb_shm_nslots(m->shm);
    double now = vb_now();
    for (uint32_t i = 0; i < n; i++) {
        if (m->slot_ended_at[i] == 0) {
            continue;
        }
        vb_slot_t *s = vb_shm_slot(m->shm, i);
        int timed_out = now - m->slot_ended_at[i] > SLOT_RELEASE_TIMEOUT_S;
        if (vb_slot_reusable(s) || timed_out) {
            if (timed_out) {
                vb_log(VB_LOG_WARN, "slot %u released after %.0f s without acks", i,
                       SLOT_RELEASE_TIMEOUT_S);
            }
            vb_slot_free(s);
            m->slot_ended_at[i] = 0;
        }
    }
}
