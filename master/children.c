/* The master's child table: fork each role, reap the dead, respawn with
 * backoff, and keep the media worker pool between its bounds. Run by the
 * master only. */
#include "master/master_int.h"
#include "master/proctitle.h"
#include "common/chan.h"
#include "common/log.h"
#include "common/stats.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESPAWN_STABLE_S 10.0 /* a child that lived this long resets its backoff */
#define RESPAWN_MAX_S 10.0

static void on_chan(evutil_socket_t fd, short what, void *arg);

/* In the child: drop everything that belongs to the master. */
static void child_close_master_state(vb_master_t *m, int keep_chan)
{
    for (int i = 0; i < 2; i++) {
        if (m->listen_fd[i] >= 0) {
            close(m->listen_fd[i]);
        }
    }
    close(m->death_pipe[1]);
    if (m->spare_fd >= 0) {
        close(m->spare_fd);
    }
    /* Else a child keeps refused connections, or the one it is forked for, open:
     * its close then sends no FIN and the socket lives as long as the child. */
    vb_linger_close_fds(m->linger);
    if (m->inflight_fd >= 0) {
        close(m->inflight_fd);
    }
    for (int i = 0; i < m->nchildren; i++) {
        if (m->children[i]->chan != keep_chan) {
            close(m->children[i]->chan);
        }
    }
    int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        signal(sigs[i], SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_run(vb_master_t *m, vb_role_t role, int index, int chan_child, int chan_master)
{
    child_close_master_state(m, -1);
    close(chan_master);
    char title[64];
    snprintf(title, sizeof(title), "voxbridge: %s", vb_role_name(role));
    vb_proctitle_set(title);
    vb_log_init(vb_role_name(role));
    vb_child_ctx_t ctx = {.role = role,
                          .index = index,
                          .conf = m->conf,
                          .shm = m->shm,
                          .chan = chan_child,
                          .death_fd = m->death_pipe[0],
                          .conf_gen = m->conf_gen};
    static int (*const mains[VB_ROLE__COUNT])(vb_child_ctx_t *) = {
        [VB_ROLE_WORKER] = vb_worker_main,
        [VB_ROLE_BROKER] = vb_broker_main,
        [VB_ROLE_STORE] = vb_store_main,
        [VB_ROLE_API] = vb_api_main,
    };
    _exit(mains[role](&ctx));
}

/* A new broker may load the offline voice's models before its loop runs. */
#define WATCHDOG_START_GRACE_MS 30000

/* The heartbeat a child of ROLE keeps, or -1 when the watchdog does not watch it. */
static int beat_of(vb_role_t role, int index)
{
    if (role == VB_ROLE_BROKER && index >= 0 && index < VB_MAX_BROKERS) {
        return index;
    }
    return role == VB_ROLE_STORE ? VB_BEAT_STORE : -1;
}

static void watchdog_kill(vb_child_t *c, uint64_t limit, const char *what)
{
    vb_log(VB_LOG_ERR, "%s %d has not run its loop for %llu ms or more%s: killing it",
           vb_role_name(c->role), (int)c->pid, (unsigned long long)limit, what);
    VB_STAT_INC(watchdog_kills);
    kill(c->pid, SIGKILL);
}

/* The ACTIVE call of media worker C whose beat is LIMIT_MS old, or NULL. A
 * worker's only long work is a frame's: a stale beat is a hang (a loop, a
 * deadlock, SIGSTOP) and its callers hear nothing. */
static vb_slot_t *stale_call(vb_master_t *m, const vb_child_t *c, uint64_t limit)
{
    for (int j = 0; j < c->nslots; j++) {
        vb_slot_t *s = vb_shm_slot(m->shm, c->slots[j]);
        if (s != NULL && vb_slot_gen(s) == c->slot_gens[j] && vb_slot_worker_stale(s, limit)) {
            return s;
        }
    }
    return NULL;
}

/* A broker or the store whose loop has stopped (a hang, SIGSTOP, a
 * runaway computation) serves nobody: calls would hear silence and records
 * wait. Kill it; the exit path restarts it and, for a broker, tells the
 * workers to hold their calls until the new one takes over. */
void vb_master_watchdog(vb_master_t *m)
{
    uint64_t limit = (uint64_t)m->conf->watchdog_ms;
    if (limit == 0) {
        return;
    }
    for (int i = 0; i < m->nchildren; i++) {
        vb_child_t *c = m->children[i];
        int beat = beat_of(c->role, c->index);
        if (c->role == VB_ROLE_WORKER && !c->watchdog_killed && stale_call(m, c, limit)) {
            /* the exit path records its calls as failed and a fresh worker takes
             * its place */
            watchdog_kill(c, limit, " for a call");
            c->watchdog_killed = 1;
        }
        if (beat < 0 || c->quitting || !vb_shm_beat_stale(m->shm, beat, limit)) {
            continue;
        }
        watchdog_kill(c, limit, "");
        vb_shm_beat_ahead(m->shm, beat, WATCHDOG_START_GRACE_MS); /* once */
    }
}

/* The table entry of a child about to be forked, with its channel event; NULL
 * (logged) when memory is short: the master never aborts for that, the next
 * tick or the next connection tries again. */
static vb_child_t *child_new(vb_master_t *m, vb_role_t role, int index, int chan)
{
    vb_child_t *c = calloc(1, sizeof(*c));
    struct event *ev = event_new(m->base, chan, EV_READ | EV_PERSIST, on_chan, m);
    if (c == NULL || ev == NULL) {
        vb_log(VB_LOG_ERR, "cannot start a %s: out of memory", vb_role_name(role));
        free(c);
        if (ev != NULL) {
            event_free(ev);
        }
        return NULL;
    }
    *c = (vb_child_t){.role = role, .index = index, .chan = chan, .chan_ev = ev,
                      .conf_gen = m->conf_gen, .started = vb_now()};
    return c;
}

vb_child_t *vb_master_spawn(vb_master_t *m, vb_role_t role, int index)
{
    if (m->nchildren == VB_MAX_CHILDREN) {
        vb_log(VB_LOG_ERR, "child table full (%d)", VB_MAX_CHILDREN);
        return NULL;
    }
    int ch[2];
    if (vb_chan_pair(ch) < 0) {
        return NULL;
    }
    vb_child_t *c = child_new(m, role, index, ch[0]);
    if (c == NULL) {
        close(ch[0]);
        close(ch[1]);
        return NULL;
    }
    int beat = beat_of(role, index);
    if (beat >= 0) {
        vb_shm_beat_ahead(m->shm, beat, WATCHDOG_START_GRACE_MS);
    }
    pid_t pid = fork();
    if (pid < 0) {
        vb_log(VB_LOG_ERR, "fork %s: %s", vb_role_name(role), strerror(errno));
        event_free(c->chan_ev);
        free(c);
        close(ch[0]);
        close(ch[1]);
        return NULL;
    }
    if (pid == 0) {
        child_run(m, role, index, ch[1], ch[0]);
    }
    close(ch[1]);
    c->pid = pid;
    event_add(c->chan_ev, NULL);
    m->children[m->nchildren++] = c;
    vb_log(VB_LOG_DEBUG, "started %s pid %d", vb_role_name(role), (int)pid);
    return c;
}

vb_child_t *vb_master_find_pid(vb_master_t *m, pid_t pid)
{
    for (int i = 0; i < m->nchildren; i++) {
        if (m->children[i]->pid == pid) {
            return m->children[i];
        }
    }
    return NULL;
}

void vb_master_child_send(vb_master_t *m, vb_child_t *c, uint32_t type)
{
    vb_chan_msg_t msg = {.type = type};
    if (type == VB_CHAN_QUIT) {
        c->quitting = 1;
    }
    int rc = vb_chan_send(c->chan, &msg, -1);
    if (rc < 0 && rc != -EPIPE) {
        vb_log(VB_LOG_WARN, "channel to %s %d: %s", vb_role_name(c->role), (int)c->pid,
               strerror(-rc));
    }
}

/* A message from child C. Each type comes from one role only: anything else
 * (a DONE from an api worker, a CLOSED from a media worker, a type only the
 * master sends) would corrupt the load counts, so it is counted and dropped. */
static void on_child_msg(vb_master_t *m, vb_child_t *c, const vb_chan_msg_t *msg)
{
    if (msg->type == VB_CHAN_DONE && c->role == VB_ROLE_WORKER) {
        vb_master_on_done(m, c, msg->slot, msg->gen, (msg->flags & VB_CHAN_F_FAILED) != 0);
        if ((msg->flags & VB_CHAN_F_LEAVING) && !c->quitting) {
            vb_master_child_send(m, c, VB_CHAN_QUIT); /* the pool starts its successor */
        }
    } else if (msg->type == VB_CHAN_CLOSED && c->role == VB_ROLE_API) {
        if (c->load > 0) {
            c->load--;
        }
    } else {
        vb_chan_bad("a message type this role does not send", (ssize_t)sizeof(*msg));
    }
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    vb_master_t *m = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    vb_child_t *c = NULL;
    for (int i = 0; i < m->nchildren; i++) {
        if (m->children[i]->chan == fd) {
            c = m->children[i];
        }
    }
    while (c != NULL) {
        rc = vb_chan_recv(fd, &msg, &passed);
        if (rc == -EPIPE) {
            event_del(c->chan_ev); /* the child is going: its exit is reaped */
            return;
        }
        if (rc < 0 && rc != -EPROTO && rc != -EMFILE) {
            return; /* -EAGAIN: all read */
        }
        if (passed >= 0) {
            close(passed); /* children never send fds */
            vb_chan_bad("a child passed a descriptor", (ssize_t)sizeof(msg));
            continue;
        }
        if (rc == 0) {
            on_child_msg(m, c, &msg);
        }
    }
}

static void child_forget(vb_master_t *m, vb_child_t *c)
{
    for (int i = 0; i < m->nchildren; i++) {
        if (m->children[i] == c) {
            m->children[i] = m->children[--m->nchildren];
            break;
        }
    }
    event_free(c->chan_ev);
    close(c->chan);
    free(c);
}

/* A worker's calls end with it: their slots are marked dead so the broker and
 * the store close the records as failed. */
static void release_worker_slots(vb_master_t *m, vb_child_t *c)
{
    while (c->nslots > 0) {
        vb_slot_t *s = vb_shm_slot(m->shm, c->slots[0]);
        vb_slot_mark_dead(s);
        VB_STAT_INC(calls_failed);
        vb_master_on_done(m, c, c->slots[0], c->slot_gens[0], 1); /* removes slots[0] */
    }
}

/* The broker serving a slot died: tell the workers so they hold the call. */
static void bump_broker_epochs(vb_master_t *m, int broker_index)
{
    uint32_t n = vb_shm_nslots(m->shm);
    for (uint32_t i = 0; i < n; i++) {
        vb_slot_t *s = vb_shm_slot(m->shm, i);
        if ((int)(i % (uint32_t)m->conf->brokers) == broker_index) {
            vb_slot_broker_lost(s);
            vb_shm_ring_bell(m->shm, i, VB_BELL_WORKER);
        }
    }
}

static void schedule_respawn(vb_master_t *m, vb_child_t *c, int crashed)
{
    if (c->role == VB_ROLE_WORKER || m->stopping || c->index >= 256) {
        return;
    }
    if (c->role == VB_ROLE_API && c->conf_gen != m->conf_gen) {
        return; /* replaced by a reload */
    }
    vb_respawn_t *r = &m->respawn[c->role][c->index];
    double lived = vb_now() - c->started;
    r->crashes = (crashed && lived < RESPAWN_STABLE_S) ? r->crashes + 1 : 0;
    double delay = r->crashes == 0 ? 0 : 0.1 * (double)(1 << (r->crashes < 8 ? r->crashes : 8));
    r->next_at = vb_now() + (delay > RESPAWN_MAX_S ? RESPAWN_MAX_S : delay);
    r->pending = 1;
}

static void describe_exit(vb_child_t *c, int status, int *crashed, int *config_error)
{
    *crashed = 0;
    *config_error = 0;
    const char *role = vb_role_name(c->role);
    if (WIFEXITED(status) && WEXITSTATUS(status) <= VB_EXIT_CLEAN) {
        vb_log(VB_LOG_DEBUG, "%s %d exited (%d)", role, (int)c->pid, WEXITSTATUS(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == VB_EXIT_CONFIG) {
        vb_log(VB_LOG_ERR, "%s %d stopped on a config or permission error; not restarting it",
               role, (int)c->pid);
        *config_error = 1;
    } else {
        *crashed = 1;
        VB_STAT_INC(worker_crashes);
        if (WIFSIGNALED(status)) {
            vb_log(VB_LOG_ERR, "%s %d crashed: signal %d", role, (int)c->pid, WTERMSIG(status));
        } else {
            vb_log(VB_LOG_ERR, "%s %d crashed: exit %d", role, (int)c->pid, WEXITSTATUS(status));
        }
    }
}

static void on_child_exit(vb_master_t *m, vb_child_t *c, int status)
{
    int crashed, config_error;
    describe_exit(c, status, &crashed, &config_error);
    if (c->role == VB_ROLE_WORKER) {
        release_worker_slots(m, c);
    } else if (c->role == VB_ROLE_BROKER) {
        bump_broker_epochs(m, c->index);
        if (!m->stopping) {
            VB_STAT_INC(broker_restarts);
        }
    }
    if (!config_error) {
        schedule_respawn(m, c, crashed);
    }
    child_forget(m, c);
}

void vb_master_reap(vb_master_t *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        vb_child_t *c = vb_master_find_pid(m, pid);
        if (c != NULL) {
            on_child_exit(m, c, status);
        }
    }
    for (int role = 0; role < VB_ROLE__COUNT; role++) {
        for (int i = 0; i < 256; i++) {
            vb_respawn_t *r = &m->respawn[role][i];
            if (r->pending && vb_now() >= r->next_at && !m->stopping) {
                r->pending = 0;
                vb_master_spawn(m, (vb_role_t)role, i);
            }
        }
    }
}

int vb_master_count(vb_master_t *m, vb_role_t role, int current_gen_only, int idle_only)
{
    int n = 0;
    for (int i = 0; i < m->nchildren; i++) {
        vb_child_t *c = m->children[i];
        if (c->role != role || (current_gen_only && (c->conf_gen != m->conf_gen || c->quitting))) {
            continue;
        }
        if (idle_only && c->load >= m->conf->calls_per_worker) {
            continue;
        }
        n++;
    }
    return n;
}

/* Keep at least `workers` current workers and `workers_min_spare` idle ones,
 * never more than workers_max processes; let surplus idle ones go. */
void vb_master_maintain_pool(vb_master_t *m)
{
    if (m->stopping) {
        return;
    }
    const vb_conf_t *cf = m->conf;
    int total = vb_master_count(m, VB_ROLE_WORKER, 0, 0);
    int cur = vb_master_count(m, VB_ROLE_WORKER, 1, 0);
    int idle = vb_master_count(m, VB_ROLE_WORKER, 1, 1);
    while (total < cf->workers_max && (cur < cf->workers || idle < cf->workers_min_spare)) {
        if (vb_master_spawn(m, VB_ROLE_WORKER, 0) == NULL) {
            return;
        }
        total++, cur++, idle++;
    }
    for (int i = 0; i < m->nchildren && cur > cf->workers && idle > cf->workers_min_spare; i++) {
        vb_child_t *c = m->children[i];
        if (c->role == VB_ROLE_WORKER && !c->quitting && c->load == 0) {
            vb_master_child_send(m, c, VB_CHAN_QUIT);
            cur--, idle--;
        }
    }
}
