/* Health and metrics in the api worker: /health, /health/live,
 * /health/ready and /metrics (Prometheus text from the shared counters). */
#include "config.h"
#include "api/api.h"
#include "common/httpd.h"
#include "common/stats.h"
#include "shm/shm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned active_calls(vb_shm_t *shm)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < vb_shm_nslots(shm); i++) {
        vb_slot_t *s = vb_shm_slot(shm, i);
        n += atomic_load_explicit(&s->state, memory_order_relaxed) == VB_SLOT_ACTIVE;
    }
    return n;
}

static void reply_json(vb_http_conn_t *c, int status, const char *body)
{
    vb_http_reply(c, status, "application/json", body, strlen(body), NULL);
}

void vb_api_health_live(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    reply_json(c, 200, "{\"status\":\"live\"}\n");
}

/* Ready while the master that feeds us connections is alive. */
void vb_api_health_ready(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    if (getppid() == 1) {
        reply_json(c, 503, "{\"status\":\"master gone\"}\n");
        return;
    }
    reply_json(c, 200, "{\"status\":\"ready\"}\n");
}

void vb_api_health(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"status\":\"ok\",\"version\":\"%s\",\"active_calls\":%u,\"slots\":%u}\n",
             PACKAGE_VERSION, active_calls(ctx->shm), vb_shm_nslots(ctx->shm));
    reply_json(c, 200, body);
}

void vb_api_metrics(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    size_t cap = 256 * VB_STAT__COUNT + 512, n = 0;
    char *body = malloc(cap);
    if (body == NULL) {
        vb_api_error(c, 500, "internal", "no memory");
        return;
    }
    for (int i = 0; i < VB_STAT__COUNT; i++) {
        n += (size_t)snprintf(body + n, cap - n,
                              "# HELP voxbridge_%s_total %s\n# TYPE voxbridge_%s_total counter\n"
                              "voxbridge_%s_total %llu\n",
                              vb_stats_name(i), vb_stats_help(i), vb_stats_name(i),
                              vb_stats_name(i),
                              (unsigned long long)atomic_load_explicit(&vb_stats->v[i],
                                                                       memory_order_relaxed));
    }
    n += (size_t)snprintf(body + n, cap - n,
                          "# HELP voxbridge_active_calls Calls with media flowing now\n"
                          "# TYPE voxbridge_active_calls gauge\nvoxbridge_active_calls %u\n"
                          "# HELP voxbridge_slots Call slots in shared memory\n"
                          "# TYPE voxbridge_slots gauge\nvoxbridge_slots %u\n",
                          active_calls(ctx->shm), vb_shm_nslots(ctx->shm));
    vb_http_reply(c, 200, "text/plain; version=0.0.4", body, n, NULL);
    free(body);
}
