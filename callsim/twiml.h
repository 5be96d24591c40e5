/* voxbridge-callsim: reads the TwiML a voice webhook answers, as far as callsim acts on it:
 * <Connect><Stream url="..."><Parameter name=".." value=".."/></Stream></Connect> opens a
 * bidirectional Media Stream; anything else (<Say>..</Say><Hangup/>, <Reject/>) ends the
 * call. A small tag scanner, not a full XML parser: no DTDs, no namespaces. Pure; run by
 * voxbridge-callsim only. */
#ifndef VB_CALLSIM_TWIML_H
#define VB_CALLSIM_TWIML_H

#include <stddef.h>

#define VB_CS_TWIML_MAX_PARAMS 16

enum {
    VB_CS_TWIML_STREAM = 1, /* <Connect><Stream> */
    VB_CS_TWIML_HANGUP,     /* no stream: the call ends (Hangup, Reject or nothing left) */
};

typedef struct {
    char name[64];
    char value[256];
} vb_cs_twiml_param_t;

typedef struct {
    int kind;
    char url[1024]; /* the Stream url */
    vb_cs_twiml_param_t params[VB_CS_TWIML_MAX_PARAMS];
    int nparams;
    char say[512];   /* text of the <Say> verbs, joined by a space */
    char verbs[256]; /* the top-level verbs, space separated, for logs */
} vb_cs_twiml_t;

/* Parses XML (LEN bytes). 0, or -EINVAL when it is not a <Response> document or a
 * <Stream> has no url. Over-long values are truncated. */
int vb_cs_twiml_parse(const char *xml, size_t len, vb_cs_twiml_t *out);
/* The value of parameter NAME, or NULL. */
const char *vb_cs_twiml_param(const vb_cs_twiml_t *t, const char *name);

#endif
