/* The api worker's request handlers (api.c routes to them). */
#ifndef VB_API_API_H
#define VB_API_API_H

#include "common/role.h"

typedef struct vb_http_conn vb_http_conn_t;
typedef struct vb_http_req vb_http_req_t;

void vb_api_error(vb_http_conn_t *c, int status, const char *code, const char *message);

/* twilio_hooks.c */
void vb_api_twilio_voice(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
void vb_api_twilio_status(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
/* health.c */
void vb_api_health(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
void vb_api_health_live(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
void vb_api_health_ready(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
void vb_api_metrics(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);

#endif
