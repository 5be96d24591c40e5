/* The compact transcript the local engine keeps in its call's slot, so that a
 * broker restarted after a crash can carry the conversation on (the store keeps
 * the full record; this is only the broker's memory). One line per event:
 *     C:<intent>:<text>   a caller turn (intent empty when none matched)
 *     A::<text>           an agent turn, written when it starts
 *     I::                 the agent turn before was interrupted
 *     E::                 the agent turn before was said to its end
 *     S:<turns>:<intent>  first line after compaction: turns and last intent of
 *                         the lines dropped
 * When a line does not fit, the oldest half of the lines is dropped (compaction).
 * Written only by the AI broker serving the call. */
#ifndef VB_BROKER_TRANSCRIPT_H
#define VB_BROKER_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "shm/slot_layout.h"

#define VB_TRANSCRIPT_TEXT_MAX 400 /* bytes of text kept per line */

typedef struct {
    uint32_t turns;       /* agent and caller turns so far */
    char last_intent[64]; /* of the last caller turn that matched one, "" if none */
    char last_speaker;    /* 'A', 'C' or 0 when nothing was said */
    int interrupted;      /* the last agent turn was cut short */
    /* the last agent turn has neither ended nor been interrupted: when a new
     * broker finds this, the one before died while the agent spoke */
    int agent_open;
    uint32_t agent_turn;                        /* its turn number */
    char agent_text[VB_TRANSCRIPT_TEXT_MAX + 1]; /* what it was to say */
} vb_transcript_state_t;

/* Rebuild the state from transcript text (tolerant: lines it does not know are
 * skipped). */
void vb_transcript_parse(const char *text, size_t len, vb_transcript_state_t *st);
/* The same from the slot (what a broker does when it attaches). Returns 1 when the
 * slot held a transcript, 0 when it was empty. */
int vb_transcript_restore(const vb_slot_t *slot, vb_transcript_state_t *st);

/* Append a turn: SPEAKER 'A' or 'C', INTENT may be NULL; newlines and ':' in the
 * intent become spaces, text is cut to VB_TRANSCRIPT_TEXT_MAX. Compacts when full.
 * Updates ST. 0, or -EINVAL for a bad speaker. */
int vb_transcript_add(vb_slot_t *slot, vb_transcript_state_t *st, char speaker,
                      const char *intent, const char *text);
/* Note that the last agent turn was interrupted. */
int vb_transcript_interrupted(vb_slot_t *slot, vb_transcript_state_t *st);
/* Note that the last agent turn was said to its end. */
int vb_transcript_finished(vb_slot_t *slot, vb_transcript_state_t *st);

/* Compaction on a buffer (for tests): keep the newer lines of TEXT (LEN bytes) that
 * fit, after an S: line for the ones dropped, in at most CAP / 2 bytes of OUT.
 * Returns the new length. */
size_t vb_transcript_compact(const char *text, size_t len, char *out, size_t cap);

#endif
