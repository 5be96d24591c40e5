/* The master's open-files budget. Every process inherits three eventfds per
 * call slot (the shm doorbells), so RLIMIT_NOFILE bounds the slots and the
 * media workers, and what is left bounds the connections an api worker may
 * hold. Checked once at start, before the shared memory is made: a limit too
 * low for the configured pool lowers workers_max (and slots) to what fits,
 * with a warning; one too low for a single call refuses to start. Run by the
 * master only. */
#include "master/master_int.h"
#include "common/log.h"

#include <dirent.h>
#include <sys/resource.h>

#define CHILD_FD_RESERVE 64    /* a child's own: its loop, logs, database, spool, TLS files */
#define MASTER_FD_RESERVE 16   /* the master's own: connections being handed over, files */
#define API_MIN_CONNECTIONS 16 /* what an api worker must be able to hold at least */
#define BASE_EXTRA 5 /* opened after the count: 2 listeners, the death pipe, a spare */
#define UNLIMITED 1000000L

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

static long nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)UNLIMITED * 4) {
        return UNLIMITED * 4;
    }
    return (long)rl.rlim_cur;
}

/* Descriptors a child needs with SLOTS slots: what it inherits, its own
 * reserve, and its connections (an api worker's minimum, a worker's calls). */
static long child_need(const vb_conf_t *cf, long base, long slots)
{
    long conns = cf->calls_per_worker * 2L;
    if (conns < API_MIN_CONNECTIONS) {
        conns = API_MIN_CONNECTIONS;
    }
    return base + slots * VB_BELL__COUNT + CHILD_FD_RESERVE + conns;
}

/* The master's: the slots, one channel per child, twice for the media and api
 * workers (a reload runs two generations side by side), its reserve and the
 * refused connections it lets linger. */
static long master_need(const vb_conf_t *cf, long base, long slots, long workers)
{
    long chans = 2 * (workers + cf->api_workers) + cf->brokers + 1;
    return base + slots * VB_BELL__COUNT + chans + MASTER_FD_RESERVE + VB_MASTER_LINGER_MAX;
}

/* The slots a pool of WORKERS needs: as configured for the configured pool
 * (an explicit `slots` may exceed it), else no more than its calls. */
static long slots_for(const vb_conf_t *cf, long workers)
{
    if (workers >= cf->workers_max) {
        return cf->slots;
    }
    long s = workers * cf->calls_per_worker;
    return s < cf->slots ? s : cf->slots;
}

static int fits(const vb_conf_t *cf, long limit, long base, long workers)
{
    long slots = slots_for(cf, workers);
    return child_need(cf, base, slots) <= limit &&
           master_need(cf, base, slots, workers) <= limit;
}

static void lower_pool(vb_master_t *m, long limit, long base, int workers)
{
    vb_conf_t *cf = m->conf;
    long want = master_need(cf, base, cf->slots, cf->workers_max);
    long kid = child_need(cf, base, cf->slots);
    cf->slots = (int)slots_for(cf, workers);
    cf->workers_max = workers;
    if (cf->workers > workers) {
        cf->workers = workers;
    }
    vb_log(VB_LOG_WARN,
           "the open-files limit (%ld) leaves room for %d call slots and %d media "
           "workers, not the %d and %d configured (they need %ld descriptors): calls past "
           "%d get 503; raise LimitNOFILE or ulimit -n",
           limit, cf->slots, workers, m->file_slots, m->file_workers_max,
           want > kid ? want : kid, cf->slots);
}

/* What an api worker's limit leaves for client connections: the limit, less
 * what every child inherits and a reserve of its own; at least
 * API_MIN_CONNECTIONS once the pool fits. */
static int api_room(const vb_conf_t *cf, long limit, long base)
{
    long room = limit - base - (long)cf->slots * VB_BELL__COUNT - CHILD_FD_RESERVE;
    return room > UNLIMITED ? (int)UNLIMITED : (int)room;
}

int vb_master_fit_fds(vb_master_t *m)
{
    vb_conf_t *cf = m->conf;
    long limit = nofile_limit();
    long base = count_open_fds() + BASE_EXTRA;
    m->fd_limit = limit;
    m->file_workers_max = cf->workers_max;
    m->file_slots = cf->slots;
    int w = cf->workers_max;
    while (w > 0 && !fits(cf, limit, base, w)) {
        w--;
    }
    if (w == 0) {
        long one = slots_for(cf, 1);
        long need = master_need(cf, base, one, 1);
        if (child_need(cf, base, one) > need) {
            need = child_need(cf, base, one);
        }
        vb_log(VB_LOG_ERR,
               "the open-files limit (%ld) is too low for even one call: voxbridge "
               "needs at least %ld descriptors; raise LimitNOFILE or ulimit -n",
               limit, need);
        return -1;
    }
    if (w < cf->workers_max) {
        lower_pool(m, limit, base, w);
    }
    m->api_cap_auto = api_room(cf, limit, base);
    return 0;
}

int vb_master_api_cap(const vb_master_t *m)
{
    int set = m->conf->api_max_connections;
    return set > 0 && set < m->api_cap_auto ? set : m->api_cap_auto;
}

void vb_master_log_api_cap(const vb_master_t *m)
{
    int set = m->conf->api_max_connections;
    if (set == 0) {
        vb_log(VB_LOG_INFO,
               "api workers take up to %d connections each (from the open-files "
               "limit)",
               m->api_cap_auto);
    } else if (set > m->api_cap_auto) {
        vb_log(VB_LOG_WARN,
               "api_max_connections = %d does not fit in the open-files limit "
               "(%ld): api workers take up to %d connections each",
               set, m->fd_limit, m->api_cap_auto);
    }
}

/* A reload reads workers_max and slots from the file again; when the file
 * still says what it said at start, the running (fitted) values stand, so the
 * fit is not reported as a change that needs a restart. */
void vb_master_refit(const vb_master_t *m, vb_conf_t *next)
{
    if (next->workers_max == m->file_workers_max && next->slots == m->file_slots) {
        next->workers_max = m->conf->workers_max;
        next->slots = m->conf->slots;
    }
}
