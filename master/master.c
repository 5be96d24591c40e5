/* The master: maps shared memory, opens the listeners, forks the roles and
 * supervises them. Signal handlers only set flags (libevent evsignal runs the
 * work in the loop). SIGHUP builds a whole new config and swaps it, or keeps
 * the old one; SIGTERM drains calls up to shutdown_timeout; SIGQUIT stops fast. */
#include "config.h"
#include "master/master_int.h"
#include "master/listen.h"
#include "master/notify.h"
#include "common/chan.h"
#include "common/log.h"
#include "common/stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 100
#define KILL_GRACE_S 3.0

double vb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    vb_master_t *m = arg;
    int listener = (l == m->listener[VB_LISTENER_MEDIA]) ? VB_LISTENER_MEDIA : VB_LISTENER_API;
    vb_master_dispatch(m, fd, listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    vb_log(VB_LOG_ERR, "accept: %s", evutil_socket_error_to_string(err));
}

#define API_FD_RESERVE 64 /* an api worker's own: channel, database, logs, spares */

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL) {
        return 0;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own */
}

/* What an api worker's open-files limit leaves for client connections: the
 * limit, less what every child inherits (three eventfds per call slot, the
 * listeners, the log) and a reserve of its own. */
static int api_cap_from_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 1000000;
    }
    long room = (long)rl.rlim_cur - count_open_fds() - API_FD_RESERVE;
    return room < 16 ? 16 : room > 1000000 ? 1000000 : (int)room;
}

static int open_listeners(vb_master_t *m)
{
    const char *addrs[2] = {m->conf->listen_api, m->conf->listen_media};
    for (int i = 0; i < 2; i++) {
        char err[300];
        m->listen_fd[i] = vb_listen_tcp(addrs[i], err, sizeof(err));
        if (m->listen_fd[i] < 0) {
            vb_log(VB_LOG_ERR, "cannot listen on %s", err);
            return -1;
        }
        m->listener[i] = evconnlistener_new(m->base, on_accept, m, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, -1,
                                            m->listen_fd[i]);
        evconnlistener_set_error_cb(m->listener[i], on_accept_error);
        vb_log(VB_LOG_NOTICE, "listening %s on %s", i == 0 ? "api" : "media", addrs[i]);
    }
    return 0;
}

static void close_listeners(vb_master_t *m)
{
    for (int i = 0; i < 2; i++) {
        if (m->listener[i] != NULL) {
            evconnlistener_free(m->listener[i]); /* closes the fd */
            m->listener[i] = NULL;
            m->listen_fd[i] = -1;
        }
    }
}

static void send_to_role(vb_master_t *m, vb_role_t role, uint32_t type, int old_gen_only)
{
    for (int i = 0; i < m->nchildren; i++) {
        vb_child_t *c = m->children[i];
        if (c->role == role && (!old_gen_only || c->conf_gen != m->conf_gen)) {
            vb_master_child_send(m, c, type);
        }
    }
}

static void start_roles(vb_master_t *m)
{
    vb_master_spawn(m, VB_ROLE_STORE, 0);
    for (int i = 0; i < m->conf->brokers; i++) {
        vb_master_spawn(m, VB_ROLE_BROKER, i);
    }
    for (int i = 0; i < m->conf->api_workers; i++) {
        vb_master_spawn(m, VB_ROLE_API, i);
    }
    vb_master_maintain_pool(m);
}

static void reload(vb_master_t *m)
{
    vb_notify("RELOADING=1");
    vb_conf_t *next = malloc(sizeof(*next));
    VB_ASSERT(next != NULL);
    char err[512], changed[512];
    if (vb_conf_load(next, m->conf->path, err, sizeof(err)) < 0) {
        vb_log(VB_LOG_ERR, "reload refused, keeping the running config: %s", err);
        VB_STAT_INC(config_reload_errors);
        free(next);
        vb_notify("READY=1");
        return;
    }
    vb_conf_finalize(next);
    vb_conf_restart_keys_changed(m->conf, next, changed, sizeof(changed));
    if (changed[0] != '\0') {
        vb_log(VB_LOG_WARN, "changed keys that need a restart, applied at the next one: %s",
               changed);
    }
    vb_conf_keep_restart_keys(next, m->conf);
    free(m->conf);
    m->conf = next;
    m->conf_gen++;
    vb_log_set_level(next->log_level);
    send_to_role(m, VB_ROLE_WORKER, VB_CHAN_QUIT, 1);
    send_to_role(m, VB_ROLE_API, VB_CHAN_QUIT, 1);
    send_to_role(m, VB_ROLE_BROKER, VB_CHAN_RELOAD, 0);
    send_to_role(m, VB_ROLE_STORE, VB_CHAN_RELOAD, 0);
    for (int i = 0; i < m->conf->api_workers; i++) {
        vb_master_spawn(m, VB_ROLE_API, i);
    }
    vb_master_maintain_pool(m);
    VB_STAT_INC(config_reloads);
    vb_log(VB_LOG_NOTICE, "config reloaded from %s (generation %u)", m->conf->path, m->conf_gen);
    vb_notify("READY=1");
}

static void begin_stop(vb_master_t *m, int how)
{
    if (m->stopping >= how) {
        return;
    }
    m->stopping = how;
    vb_notify("STOPPING=1");
    close_listeners(m);
    double grace = how == 1 ? (double)m->conf->shutdown_timeout : 0.0;
    m->stop_deadline = vb_now() + grace;
    vb_log(VB_LOG_NOTICE, "%s stop: %d children, waiting up to %.0f s for calls to end",
           how == 1 ? "graceful" : "fast", m->nchildren, grace);
    send_to_role(m, VB_ROLE_WORKER, VB_CHAN_QUIT, 0);
    send_to_role(m, VB_ROLE_API, VB_CHAN_QUIT, 0);
    if (how == 2) {
        for (int i = 0; i < m->nchildren; i++) {
            kill(m->children[i]->pid, SIGKILL);
        }
    }
}

/* Brokers and the store go last, once no call can still produce events. */
static void stop_tick(vb_master_t *m)
{
    double now = vb_now();
    int calls_left = vb_master_count(m, VB_ROLE_WORKER, 0, 0) + vb_master_count(m, VB_ROLE_API, 0, 0);
    if (calls_left == 0 || now > m->stop_deadline) {
        for (int i = 0; i < m->nchildren; i++) {
            vb_child_t *c = m->children[i];
            if (!c->quitting) {
                vb_master_child_send(m, c, VB_CHAN_QUIT);
            }
        }
    }
    if (now > m->stop_deadline + KILL_GRACE_S) {
        for (int i = 0; i < m->nchildren; i++) {
            kill(m->children[i]->pid, SIGKILL);
        }
    } else if (now > m->stop_deadline) {
        for (int i = 0; i < m->nchildren; i++) {
            kill(m->children[i]->pid, SIGTERM);
        }
    }
    if (m->nchildren == 0) {
        event_base_loopexit(m->base, NULL);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    vb_master_t *m = arg;
    vb_master_reap(m);
    vb_master_slot_tick(m);
    vb_master_watchdog(m);
    if (m->stopping) {
        stop_tick(m);
    } else {
        vb_master_maintain_pool(m);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    vb_master_t *m = arg;
    switch (sig) {
    case SIGHUP:
        if (!m->stopping) {
            reload(m);
        }
        break;
    case SIGTERM:
    case SIGINT:
        begin_stop(m, 1);
        break;
    case SIGQUIT:
        begin_stop(m, 2);
        break;
    case SIGUSR1:
        vb_log_reopen();
        for (int i = 0; i < m->nchildren; i++) {
            vb_master_child_send(m, m->children[i], VB_CHAN_REOPEN_LOGS);
        }
        break;
    case SIGCHLD:
        vb_master_reap(m);
        break;
    }
}

static void add_signals(vb_master_t *m)
{
    int sigs[6] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD};
    for (int i = 0; i < 6; i++) {
        m->sig_ev[i] = evsignal_new(m->base, sigs[i], on_signal, m);
        evsignal_add(m->sig_ev[i], NULL);
    }
    signal(SIGPIPE, SIG_IGN);
}

static int setup(vb_master_t *m, vb_conf_t *conf)
{
    m->conf = conf;
    m->conf_gen = 1;
    m->listen_fd[0] = m->listen_fd[1] = -1;
    m->base = event_base_new();
    m->shm = vb_shm_create((uint32_t)conf->slots);
    if (m->base == NULL || m->shm == NULL) {
        vb_log(VB_LOG_ERR, "cannot map shared memory for %d slots: %s", conf->slots,
               strerror(errno));
        return -1;
    }
    vb_stats_attach(vb_shm_stats(m->shm));
    m->slot_owner_pid = calloc((size_t)conf->slots, sizeof(uint32_t));
    m->slot_ended_at = calloc((size_t)conf->slots, sizeof(double));
    if (pipe2(m->death_pipe, O_CLOEXEC) < 0 || open_listeners(m) < 0) {
        return -1;
    }
    m->api_cap_auto = api_cap_from_limit();
    if (conf->api_max_connections == 0) {
        vb_log(VB_LOG_INFO, "api workers take up to %d connections each (from the open-files "
               "limit)", m->api_cap_auto);
    }
    add_signals(m);
    struct timeval tv = {0, TICK_MS * 1000};
    m->tick_ev = event_new(m->base, -1, EV_PERSIST, on_tick, m);
    event_add(m->tick_ev, &tv);
    return 0;
}

int vb_master_run(vb_conf_t *conf)
{
    static vb_master_t master;
    vb_master_t *m = &master;
    if (setup(m, conf) < 0) {
        return VB_EXIT_CONFIG;
    }
    start_roles(m);
    vb_log(VB_LOG_NOTICE, "voxbridge %s started: %d workers, %d brokers, %d api workers, %d slots",
           PACKAGE_VERSION, conf->workers, conf->brokers, conf->api_workers, conf->slots);
    vb_notify("READY=1");
    event_base_dispatch(m->base);
    vb_log(VB_LOG_NOTICE, "stopped");
    return 0;
}
