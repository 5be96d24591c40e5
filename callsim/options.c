/* voxbridge-callsim: command-line parsing (see options.h). */
#include "callsim/options.h"

#include "callsim/conv.h"
#include "callsim/speak.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_URL = 256,
    OPT_PUBLIC_URL,
    OPT_TOKEN,
    OPT_ACCOUNT,
    OPT_TO,
    OPT_FROM,
    OPT_WAV,
    OPT_PAUSE,
    OPT_OUT,
    OPT_CALLS,
    OPT_DURATION,
    OPT_RAMP,
    OPT_PHASES,
    OPT_TAIL,
    OPT_TIMEOUT,
    OPT_DTMF,
    OPT_INSECURE,
    OPT_CA,
    OPT_QUIET,
    OPT_PER_CALL,
    OPT_BURSTS,
    OPT_ONSET_DB,
    OPT_QUIET_MS,
    OPT_SKIP_ONSETS,
    OPT_SAY,
    OPT_VOICE,
    OPT_RATE,
    OPT_GAP,
    OPT_WAIT,
    OPT_HELP,
};

/* In the order of the enum above: an option's name is longopts[opt - OPT_URL].name. */
static const struct option longopts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"public-url", required_argument, NULL, OPT_PUBLIC_URL},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"account-sid", required_argument, NULL, OPT_ACCOUNT},
    {"to", required_argument, NULL, OPT_TO},
    {"from", required_argument, NULL, OPT_FROM},
    {"wav", required_argument, NULL, OPT_WAV},
    {"pause-ms", required_argument, NULL, OPT_PAUSE},
    {"out", required_argument, NULL, OPT_OUT},
    {"calls", required_argument, NULL, OPT_CALLS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"ramp-ms", required_argument, NULL, OPT_RAMP},
    {"phases", required_argument, NULL, OPT_PHASES},
    {"tail-ms", required_argument, NULL, OPT_TAIL},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"dtmf", required_argument, NULL, OPT_DTMF},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"ca-file", required_argument, NULL, OPT_CA},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"per-call", no_argument, NULL, OPT_PER_CALL},
    {"bursts", required_argument, NULL, OPT_BURSTS},
    {"onset-db", required_argument, NULL, OPT_ONSET_DB},
    {"quiet-ms", required_argument, NULL, OPT_QUIET_MS},
    {"skip-onsets", required_argument, NULL, OPT_SKIP_ONSETS},
    {"say", required_argument, NULL, OPT_SAY},
    {"voice", required_argument, NULL, OPT_VOICE},
    {"rate", required_argument, NULL, OPT_RATE},
    {"gap-ms", required_argument, NULL, OPT_GAP},
    {"wait-ms", required_argument, NULL, OPT_WAIT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

void vb_cs_opts_usage(FILE *f)
{
    fputs("usage: voxbridge-callsim --url URL [options]\n"
          "Places simulated Twilio calls: a signed voice webhook, then the Media Streams\n"
          "WebSocket the TwiML names, with caller audio in real time. Progress goes to\n"
          "stderr; the last line on stdout is a JSON summary. Exit 0 when every call was\n"
          "answered and ended cleanly, 1 otherwise, 2 on bad usage.\n\n"
          "  --url URL          http(s) base of the API listener (required)\n"
          "  --public-url URL   base URL the signature is computed over (default: --url)\n"
          "  --token TOKEN      Twilio auth token (default: $TWILIO_AUTH_TOKEN)\n"
          "  --account-sid SID  AccountSid sent (default: random AC...)\n"
          "  --to E164          called number (default " VB_CS_DEFAULT_TO ")\n"
          "  --from E164        caller number (default " VB_CS_DEFAULT_FROM ")\n"
          "  --wav FILE         caller line (PCM16 or mu-law WAV; repeatable, in order)\n"
          "  --say TEXT         caller line spoken with espeak-ng (repeatable, mixes with\n"
          "                     --wav in order)\n"
          "  --voice NAME       espeak-ng voice of --say lines (default " VB_CS_DEFAULT_VOICE
          ")\n"
          "  --rate WPM         speaking rate of --say lines (default 165)\n"
          "  --gap-ms N         conversation: agent quiet this long before the next line\n"
          "                     (default 600)\n"
          "  --wait-ms N        conversation: longest wait for an answer to start; the line\n"
          "                     then counts as unanswered (default 8000)\n"
          "  --pause-ms N       conversation: wait this long for a greeting before the first\n"
          "                     line; with --duration: silence after each line (default 800)\n"
          "  --out FILE.wav     agent audio as heard (PCM16 8 kHz); FILE-N.wav per call\n"
          "                     when --calls > 1\n"
          "  --calls N          calls to place (default 1)\n"
          "  --duration S       end each call after S seconds, repeating the caller audio\n"
          "                     (default: when the audio is done plus 2 s)\n"
          "  --ramp-ms N        spacing between call starts (default 20)\n"
          "  --phases N         spread the calls' 20 ms frames over N phases (default 1)\n"
          "  --tail-ms N        listen N ms after the last frame before hanging up (default 0)\n"
          "  --timeout S        overall limit (default: computed from the above + 30 s)\n"
          "  --dtmf DIGITS      send these DTMF events after start\n"
          "  --insecure         wss/https without certificate verification\n"
          "  --ca-file FILE     CA bundle for wss/https verification\n"
          "  --quiet            only warnings and errors on stderr\n"
          "  --per-call         per_call in the summary even for more than 20 calls\n"
          "  --bursts N         test-signal bursts without --wav/--duration (default 10)\n"
          "  --onset-db DB      level that counts as speech onset (default -36 dBFS)\n"
          "  --quiet-ms N       silence needed before an agent onset (default 200)\n"
          "  --skip-onsets N    ignore the first N agent onsets per call (a greeting)\n"
          "  --help             this text\n",
          f);
}

static void defaults(vb_cs_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->token = getenv("TWILIO_AUTH_TOKEN");
    o->to = VB_CS_DEFAULT_TO;
    o->from = VB_CS_DEFAULT_FROM;
    o->pause_ms = VB_CS_DEFAULT_PAUSE_MS;
    o->calls = 1;
    o->ramp_ms = VB_CS_DEFAULT_RAMP_MS;
    o->phases = 1;
    o->bursts = VB_CS_DEFAULT_BURSTS;
    o->onset_dbfs = VB_CS_DEFAULT_ONSET_DBFS;
    o->quiet_ms = VB_CS_DEFAULT_QUIET_MS;
    o->voice = VB_CS_DEFAULT_VOICE;
    o->rate = VB_CS_DEFAULT_RATE;
    o->gap_ms = VB_CS_DEFAULT_GAP_MS;
    o->wait_ms = VB_CS_DEFAULT_WAIT_MS;
}

/* Whole decimal in [lo, hi]. */
static int int_arg(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int num_arg(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int take_line(vb_cs_opts_t *o, int is_say, const char *arg)
{
    if (o->nlines >= VB_CS_MAX_WAVS) {
        return -EINVAL;
    }
    if (is_say && (arg[strspn(arg, " \t\r\n")] == '\0' || strlen(arg) > VB_CS_SAY_MAX)) {
        return -EINVAL;
    }
    o->lines[o->nlines++] = (vb_cs_line_t){.is_say = is_say, .arg = arg};
    if (!is_say) {
        o->wavs[o->nwavs++] = arg;
    }
    return 0;
}

/* Options with a value to check; -EINVAL when it is out of range. */
static int numeric(vb_cs_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case OPT_PAUSE:
        return int_arg(arg, 0, 600000, &o->pause_ms);
    case OPT_CALLS:
        return int_arg(arg, 1, VB_CS_MAX_CALLS, &o->calls);
    case OPT_DURATION:
        return num_arg(arg, 0.02, 86400, &o->duration_s);
    case OPT_RAMP:
        return int_arg(arg, 0, 3600000, &o->ramp_ms);
    case OPT_PHASES:
        return int_arg(arg, 1, 20, &o->phases);
    case OPT_TAIL:
        return int_arg(arg, 0, 60000, &o->tail_ms);
    case OPT_TIMEOUT:
        return num_arg(arg, 0.1, 864000, &o->timeout_s);
    case OPT_BURSTS:
        return int_arg(arg, 1, 100000, &o->bursts);
    case OPT_ONSET_DB:
        return num_arg(arg, -90, 0, &o->onset_dbfs);
    case OPT_QUIET_MS:
        return int_arg(arg, 5, 60000, &o->quiet_ms);
    case OPT_SKIP_ONSETS:
        return int_arg(arg, 0, 1000000, &o->skip_onsets);
    case OPT_RATE:
        return int_arg(arg, VB_CS_MIN_RATE, VB_CS_MAX_RATE, &o->rate);
    case OPT_GAP:
        return int_arg(arg, 0, 60000, &o->gap_ms);
    case OPT_WAIT:
        return int_arg(arg, 100, 600000, &o->wait_ms);
    default:
        return -EINVAL;
    }
}

/* One option; 1 for --help, -EINVAL when its value is bad. */
static int one(vb_cs_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case OPT_URL:
        o->url = arg;
        return 0;
    case OPT_PUBLIC_URL:
        o->public_url = arg;
        return 0;
    case OPT_TOKEN:
        o->token = arg;
        return 0;
    case OPT_ACCOUNT:
        o->account_sid = arg;
        return 0;
    case OPT_TO:
        o->to = arg;
        return 0;
    case OPT_FROM:
        o->from = arg;
        return 0;
    case OPT_WAV:
        return take_line(o, 0, arg);
    case OPT_SAY:
        return take_line(o, 1, arg);
    case OPT_VOICE:
        o->voice = arg;
        return arg[0] != '\0' ? 0 : -EINVAL;
    case OPT_OUT:
        o->out = arg;
        return 0;
    case OPT_DTMF:
        o->dtmf = arg;
        return 0;
    case OPT_INSECURE:
        o->insecure = 1;
        return 0;
    case OPT_CA:
        o->ca_file = arg;
        return 0;
    case OPT_QUIET:
        o->quiet = 1;
        return 0;
    case OPT_PER_CALL:
        o->per_call = 1;
        return 0;
    case OPT_HELP:
        return 1;
    default:
        return numeric(o, c, arg);
    }
}

static int check(const vb_cs_opts_t *o, FILE *err)
{
    if (o->url == NULL ||
        (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)) {
        fprintf(err, "voxbridge-callsim: --url http(s)://host:port is required\n");
        return -EINVAL;
    }
    for (const char *d = o->dtmf; d != NULL && *d != '\0'; d++) {
        if (strchr("0123456789*#ABCDabcdw", *d) == NULL) {
            fprintf(err, "voxbridge-callsim: --dtmf: '%c' is not a DTMF digit\n", *d);
            return -EINVAL;
        }
    }
    return 0;
}

int vb_cs_opts_conversation(const vb_cs_opts_t *o)
{
    return o->nlines > 0 && o->duration_s <= 0;
}

int vb_cs_opts_parse(vb_cs_opts_t *o, int argc, char **argv, FILE *out, FILE *err)
{
    defaults(o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == '?') {
            fprintf(err, "voxbridge-callsim: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return -EINVAL;
        }
        int rc = one(o, c, optarg);
        if (rc == 1) {
            vb_cs_opts_usage(out);
            return 1;
        }
        if (rc < 0) {
            fprintf(err, "voxbridge-callsim: bad value for --%s: %s\n",
                    longopts[c - OPT_URL].name, optarg ? optarg : "");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(err, "voxbridge-callsim: unexpected argument: %s\n", argv[optind]);
        return -EINVAL;
    }
    if (o->public_url == NULL) {
        o->public_url = o->url;
    }
    return check(o, err);
}
