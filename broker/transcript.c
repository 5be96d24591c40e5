/* The compact transcript in a call's slot (see transcript.h). Run by the AI
 * broker on its event loop; appends go through vb_slot_transcript_append (release
 * of transcript_len), compaction rewrites the area in place.
 *
 * Compaction is not atomic for a reader: a broker that crashes in the middle of
 * one (a copy of at most 4 KiB) leaves a mix of old and new lines under the old
 * length. The successor then parses what it can (unknown lines are skipped); the
 * turn count may be off, and the greeting is not repeated because the area is
 * never empty once something was said. */
#include "broker/transcript.h"

#include "shm/shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void parse_line(const char *line, size_t len, vb_transcript_state_t *st)
{
    if (len < 2 || line[1] != ':') {
        return;
    }
    const char *f1 = line + 2, *end = line + len;
    const char *colon = memchr(f1, ':', (size_t)(end - f1));
    const char *f2 = colon ? colon + 1 : end;
    size_t n1 = (size_t)((colon ? colon : end) - f1);
    switch (line[0]) {
    case 'S':
        st->turns = (uint32_t)strtoul(f1, NULL, 10);
        snprintf(st->last_intent, sizeof(st->last_intent), "%.*s", (int)(end - f2), f2);
        break;
    case 'C':
        st->turns++;
        st->last_speaker = 'C';
        if (n1 > 0) {
            snprintf(st->last_intent, sizeof(st->last_intent), "%.*s", (int)n1, f1);
        }
        break;
    case 'A':
        st->turns++;
        st->last_speaker = 'A';
        st->interrupted = 0;
        st->agent_open = 1;
        st->agent_turn = st->turns;
        snprintf(st->agent_text, sizeof(st->agent_text), "%.*s", (int)(end - f2), f2);
        break;
    case 'I':
        st->interrupted = st->last_speaker == 'A';
        st->agent_open = 0;
        break;
    case 'E':
        st->agent_open = 0;
        break;
    default:
        break;
    }
}

void vb_transcript_parse(const char *text, size_t len, vb_transcript_state_t *st)
{
    memset(st, 0, sizeof(*st));
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        parse_line(text + pos, n, st);
        pos += n + 1;
    }
}

int vb_transcript_restore(const vb_slot_t *slot, vb_transcript_state_t *st)
{
    char buf[VB_SLOT_TRANSCRIPT + 1];
    size_t len = vb_slot_transcript_read(slot, buf, sizeof(buf));
    vb_transcript_parse(buf, len, st);
    return len > 0;
}

size_t vb_transcript_compact(const char *text, size_t len, char *out, size_t cap)
{
    vb_transcript_state_t dropped;
    char head[96];
    size_t keep_from = len, budget = cap / 2;
    /* newest lines first, while they fit beside the S: line */
    while (keep_from > 0) {
        size_t start = keep_from - 1;
        while (start > 0 && text[start - 1] != '\n') {
            start--;
        }
        if (len - start + sizeof(head) > budget) {
            break;
        }
        keep_from = start;
    }
    vb_transcript_parse(text, keep_from, &dropped);
    int n = snprintf(head, sizeof(head), "S:%u:%s\n", dropped.turns, dropped.last_intent);
    size_t hl = n > 0 && (size_t)n < sizeof(head) ? (size_t)n : 0;
    memcpy(out, head, hl);
    memcpy(out + hl, text + keep_from, len - keep_from);
    return hl + len - keep_from;
}

static int compact_slot(vb_slot_t *slot)
{
    char cur[VB_SLOT_TRANSCRIPT + 1], out[VB_SLOT_TRANSCRIPT];
    size_t len = vb_slot_transcript_read(slot, cur, sizeof(cur));
    size_t n = vb_transcript_compact(cur, len, out, sizeof(out));
    memcpy(slot->transcript, out, n);
    /* Release: the rewritten bytes before the new length (pairs with the acquire in
     * vb_slot_transcript_read). */
    atomic_store_explicit(&slot->transcript_len, (uint32_t)n, memory_order_release);
    return 0;
}

/* "X:intent:text\n" with newlines flattened and the text cut (INTENT has no ':'). */
static size_t format_line(char *out, size_t cap, char speaker, const char *intent,
                          const char *text)
{
    int n = snprintf(out, cap, "%c:%.63s:%.*s", speaker, intent ? intent : "",
                     VB_TRANSCRIPT_TEXT_MAX, text ? text : "");
    size_t len = n < 0 ? 0 : (size_t)n >= cap - 1 ? cap - 2 : (size_t)n;
    for (size_t i = 2; i < len; i++) {
        if (out[i] == '\n' || out[i] == '\r') {
            out[i] = ' ';
        }
    }
    out[len++] = '\n';
    out[len] = '\0';
    return len;
}

static int append(vb_slot_t *slot, const char *line, size_t len)
{
    if (vb_slot_transcript_append(slot, line, len) == 0) {
        return 0;
    }
    compact_slot(slot);
    return vb_slot_transcript_append(slot, line, len);
}

int vb_transcript_add(vb_slot_t *slot, vb_transcript_state_t *st, char speaker,
                      const char *intent, const char *text)
{
    char line[VB_TRANSCRIPT_TEXT_MAX + 80];
    char name[64];
    if (speaker != 'A' && speaker != 'C') {
        return -EINVAL;
    }
    snprintf(name, sizeof(name), "%s", speaker == 'C' && intent ? intent : "");
    for (char *p = name; *p; p++) {
        *p = (*p == ':' || *p == '\n' || *p == '\r') ? ' ' : *p;
    }
    size_t len = format_line(line, sizeof(line), speaker, name, text);
    parse_line(line, len - 1, st);
    return append(slot, line, len);
}

int vb_transcript_interrupted(vb_slot_t *slot, vb_transcript_state_t *st)
{
    parse_line("I::", 3, st);
    return append(slot, "I::\n", 4);
}

int vb_transcript_finished(vb_slot_t *slot, vb_transcript_state_t *st)
{
    parse_line("E::", 3, st);
    return append(slot, "E::\n", 4);
}
