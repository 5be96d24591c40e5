/* The master: maps shared memory, opens the listeners, forks the roles and
 * supervises them. Signal handlers only set flags (libevent evsignal runs the
 * work in the loop). SIGHUP builds a whole new config and swaps it, or keeps
 * the old one; SIGTERM drains calls up to shutdown_timeout; SIGQUIT stops fast. */
#include "config.h"
#include "master/master_int.h"
#include "master/listen.h"
#include "master/notify.h"
#include "common/chan.h"
#include "common/clock.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 100
#define KILL_GRACE_S 3.0

double vb_now(void)
{
    return (double)vb_mono_ns() / 1e9;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    vb_master_t *m = arg;
    int listener = (l == m->listener[VB_LISTENER_MEDIA]) ? VB_LISTENER_MEDIA : VB_LISTENER_API;
    vb_master_dispatch(m, fd, listener);
}

/* accept() found no free descriptor: the connection would wait in the
 * backlog while the listener stays readable, so the loop would spin and the
 * caller hang. Give up the spare descriptor, take the connection, answer 503
 * and close it (the libev / nginx way), then take the spare back. */
static void shed_connection(vb_master_t *m, struct evconnlistener *l)
{
    static vb_log_limit_t limit;
    int media = l == m->listener[VB_LISTENER_MEDIA];
    if (m->spare_fd >= 0) {
        close(m->spare_fd);
        m->spare_fd = -1;
    }
    int fd = accept4(evconnlistener_get_fd(l), NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        VB_STAT_INC(accept_no_fds);
        vb_http_busy_fd(fd, "the server is out of file descriptors");
    }
    m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (m->spare_fd < 0 || fd < 0) {
        evconnlistener_disable(l); /* nothing to answer with: on_tick enables it again */
        m->accept_paused = 1;
    }
    struct rlimit rl;
    if (vb_log_limit(&limit, 1, 10, NULL) && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        vb_log(VB_LOG_ERR, "accept on the %s listener: no free file descriptor (open-files "
               "limit %llu): connections answered 503", media ? "media" : "api",
               (unsigned long long)rl.rlim_cur);
    }
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    vb_master_t *m = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE) {
        shed_connection(m, l);
        return;
    }
    vb_log(VB_LOG_ERR, "accept: %s", evutil_socket_error_to_string(err));
}

static void resume_accepting(vb_master_t *m)
{
    m->accept_paused = 0;
    for (int i = 0; i < 2; i++) {
        if (m->listener[i] != NULL) {
            evconnlistener_enable(m->listener[i]);
        }
    }
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

/* The new config, or NULL (logged) when it cannot be used. Out of memory is
 * not a reason to stop supervising: the running config stays. */
static vb_conf_t *load_next(vb_master_t *m)
{
    vb_conf_t *next = malloc(sizeof(*next));
    char err[512];
    if (next == NULL) {
        vb_log(VB_LOG_ERR, "reload refused, keeping the running config: out of memory");
        return NULL;
    }
    if (vb_conf_load(next, m->conf->path, err, sizeof(err)) < 0) {
        vb_log(VB_LOG_ERR, "reload refused, keeping the running config: %s", err);
        VB_STAT_INC(config_reload_errors);
        free(next);
        return NULL;
    }
    vb_conf_finalize(next);
    vb_master_refit(m, next);
    return next;
}

static void reload(vb_master_t *m)
{
    vb_notify("RELOADING=1");
    char changed[512];
    vb_conf_t *next = load_next(m);
    if (next == NULL) {
        vb_notify("READY=1");
        return;
    }
    vb_conf_restart_keys_changed(m->conf, next, changed, sizeof(changed));
    if (changed[0] != '\0') {
        vb_log(VB_LOG_WARN, "changed keys that need a restart, applied at the next one: %s",
               changed);
    }
    vb_conf_keep_restart_keys(next, m->conf);
    if (next->workers > next->workers_max) {
        next->workers = next->workers_max; /* workers_max may have been lowered at start */
    }
    free(m->conf);
    m->conf = next;
    m->conf_gen++;
    vb_log_set_level(next->log_level);
    vb_master_log_api_cap(m);
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
    if (m->accept_paused && !m->stopping) {
        resume_accepting(m); /* shed_connection() paused them a tick ago */
    }
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
    m->inflight_fd = -1;
    m->base = event_base_new();
    if (m->base == NULL || vb_master_fit_fds(m) < 0) {
        return -1;
    }
    m->shm = vb_shm_create((uint32_t)conf->slots);
    if (m->shm == NULL) {
        vb_log(VB_LOG_ERR, "cannot map shared memory for %d slots: %s", conf->slots,
               strerror(errno));
        return -1;
    }
    vb_stats_attach(vb_shm_stats(m->shm));
    m->slot_owner_pid = calloc((size_t)conf->slots, sizeof(uint32_t));
    m->slot_ended_at = calloc((size_t)conf->slots, sizeof(double));
    VB_ASSERT(m->slot_owner_pid != NULL && m->slot_ended_at != NULL); /* at start only */
    /* non-blocking: a child that finds the pipe readable reads it to tell EOF
     * (the master is gone) from bytes that should never be there */
    if (pipe2(m->death_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || open_listeners(m) < 0) {
        return -1;
    }
    m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    m->linger = vb_linger_new(m->base, VB_MASTER_LINGER_MAX);
    vb_master_log_api_cap(m);
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
