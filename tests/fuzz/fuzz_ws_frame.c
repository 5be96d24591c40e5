/* libFuzzer target: WebSocket frame handling (wslay plus common/ws.c) on a
 * socketless vb_ws_t. The first byte picks the side (server: peer frames must
 * be masked; client: they must not be) and the piece size; the rest is fed as
 * frames from the peer. Build: make fuzz. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int closed;

static void on_message(vb_ws_t *ws, int is_text, const uint8_t *d, size_t len, void *arg)
{
    if (len > 65536 || (is_text && !vb_utf8_valid(d, len))) {
        abort();
    }
    if (len > 0 && d[0] == 'E') {
        vb_ws_send(ws, is_text, d, len); /* echo from inside the callback */
    }
    if (len > 0 && d[0] == 'C') {
        vb_ws_close(ws, 1000, "bye");
    }
}

static void on_close(vb_ws_t *ws, int code, const char *reason, void *arg)
{
    if (closed++) {
        abort(); /* exactly once */
    }
}

static const vb_ws_callbacks_t cbs = {NULL, on_message, on_close};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *base;
    if (base == NULL) {
        base = event_base_new();
        vb_log_set_level(VB_LOG_ERR);
    }
    if (size < 1) {
        return 0;
    }
    int is_server = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    data++;
    size--;
    closed = 0;
    vb_ws_t *ws = vb_ws_mem_new(base, is_server, 65536, &cbs, NULL);
    size_t off = 0;
    while (off < size &&
           vb_ws_mem_feed(ws, data + off, size - off < step ? size - off : step) == 0) {
        off += step;
    }
    vb_ws_abort(ws);
    event_base_loop(base, EVLOOP_NONBLOCK);
    if (closed != 1) {
        abort();
    }
    return 0;
}
