#!/usr/bin/env python3
"""Writes voxbridge.conf(5) and docs/configuration.md from the config key table.

The table is what `voxbridge --config-keys` prints, one key a line:
    name<TAB>default<TAB>reload|restart<TAB>description
so the pages always name every key the code knows. Run by hand (or `make
update-conf-docs` in a build directory) after a key is added or changed:

    voxbridge --config-keys | packaging/gen-conf-docs.py \\
        --man man/voxbridge.conf.5 --md docs/configuration.md --version 0.1.0

tests/packaging/check-conf-docs.sh fails when a key is missing from either page.
"""

import argparse
import sys

# Sections of the pages, in order: (title, key names or prefixes). A key that
# matches none lands in "Other keys", so a new key is never left out.
GROUPS = [
    ("Listeners", ["listen_api", "listen_media", "listen_api_tls_cert", "listen_api_tls_key",
                   "listen_media_tls_cert", "listen_media_tls_key"]),
    ("What the carrier is told", ["public_url", "public_media_url"]),
    ("Carrier credentials", ["twilio_"]),
    ("Storage", ["database_url", "redis_url", "state_dir"]),
    ("Processes", ["workers", "workers_min_spare", "workers_max", "calls_per_worker", "brokers",
                   "api_workers", "shutdown_timeout", "slots"]),
    ("Limits on what clients send", ["http_", "ws_", "max_unplayed_ms"]),
    ("Logging", ["log_level", "log_file"]),
    ("Assistants", ["assistant."]),
    ("Numbers", ["number."]),
]

INTRO = [
    "The configuration file holds one \"key = value\" per line. Blank lines and lines "
    "whose first non-blank character is '#' are ignored; spaces around the key and "
    "the value are trimmed. An unknown key, or a value of the wrong type or out of "
    "bounds, makes the whole file invalid: voxbridge refuses to start with it, and a "
    "reload with it keeps the running configuration.",
    "Check a file before using it with \"voxbridge -t -c FILE\" (exit 0 when it is "
    "valid, 2 with the reason on stderr otherwise). \"voxbridge --config-keys\" "
    "prints the table below as tab-separated text.",
    "Secrets (database_url, redis_url, twilio_auth_token) may be given as env:NAME, "
    "the value of environment variable NAME (set it with Environment= or "
    "EnvironmentFile= in a systemd drop-in), or file:PATH, the contents of that file "
    "without its trailing newline (keep it mode 0640, owner root, group voxbridge).",
    "Keys marked reload take effect on SIGHUP (\"systemctl reload voxbridge\"): the "
    "master reads and checks the whole file, starts a new generation of processes "
    "with it and lets the old ones finish their calls, so calls in progress keep the "
    "settings they started with and none is dropped. Keys marked restart are read "
    "only at start: a reload that changes one logs that it is kept until the next "
    "restart (\"systemctl restart voxbridge\", which drains calls first).",
]

ASSISTANT_NOTE = (
    "Assistants and numbers are families of keys: assistant.NAME.FIELD declares "
    "assistant NAME, and number.E164 = NAME routes calls to that number (E.164, "
    "e.g. +15550000001) to it; a number must name a declared assistant. A call to a "
    "number that no assistant answers hears a short message and is hung up.")

EXAMPLE = """listen_api = 0.0.0.0:8080
listen_media = 0.0.0.0:8081
public_url = https://voice.example.com
public_media_url = wss://voice.example.com
twilio_auth_token = env:TWILIO_AUTH_TOKEN
database_url = file:/etc/voxbridge/database_url
redis_url = redis://127.0.0.1:6379/0
workers = auto
shutdown_timeout = 60
assistant.support.mode = local
assistant.support.first_message = Hello, how can I help?
number.+15550000001 = support"""


def read_table(stream):
    keys = []
    for n, line in enumerate(stream, 1):
        line = line.rstrip("\n")
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 4 or parts[2] not in ("reload", "restart"):
            sys.exit("line %d of the key table is not name/default/reload|restart/doc: %r"
                     % (n, line))
        keys.append({"name": parts[0], "default": parts[1], "when": parts[2], "doc": parts[3]})
    if not keys:
        sys.exit("the key table is empty")
    return keys


def group_of(name):
    for title, members in GROUPS:
        for m in members:
            if name == m or (m.endswith(("_", ".")) and name.startswith(m)):
                return title
    return "Other keys"


def grouped(keys):
    titles = [t for t, _ in GROUPS] + ["Other keys"]
    out = []
    for t in titles:
        ks = [k for k in keys if group_of(k["name"]) == t]
        if ks:
            out.append((t, ks))
    return out


def shown(default):
    return "empty" if default == "(empty)" else default


def roff(text):
    """Escapes text for groff: backslashes, and a leading '.' or '''."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def man_page(keys, version):
    out = [
        '.\\" voxbridge.conf(5): generated by packaging/gen-conf-docs.py from',
        '.\\" `voxbridge --config-keys`; edit the generator or the key table, not this file.',
        '.TH VOXBRIDGE.CONF 5 "" "voxbridge %s" "File Formats"' % version,
        ".SH NAME",
        "voxbridge.conf \\- configuration file of the voxbridge telephony server",
        ".SH SYNOPSIS",
        ".I /etc/voxbridge/voxbridge.conf",
        ".SH DESCRIPTION",
    ]
    for i, p in enumerate(INTRO):
        if i:
            out.append(".PP")
        out.append(roff(p))
    for title, ks in grouped(keys):
        out.append(".SH %s" % roff(title.upper()))
        if title == "Assistants":
            out.append(roff(ASSISTANT_NOTE))
        for k in ks:
            out.append(".TP")
            default = "" if k["default"] == "-" else ", default %s" % shown(k["default"])
            out.append(".B %s" % roff(k["name"]))
            out.append("(%s%s)" % (k["when"], roff(default)))
            out.append(".br")
            out.append(roff(k["doc"]) + ".")
    out += [
        ".SH EXAMPLE",
        ".nf",
        ".RS",
    ]
    out += [roff(line) for line in EXAMPLE.splitlines()]
    out += [
        ".RE",
        ".fi",
        ".SH FILES",
        ".TP",
        ".I /etc/voxbridge/voxbridge.conf",
        "The configuration file read by the voxbridge service.",
        ".TP",
        ".I /var/lib/voxbridge",
        "state_dir: the spool of call records (spool/) and recordings (recordings/).",
        ".SH SEE ALSO",
        ".BR voxbridge (8),",
        ".BR systemctl (1),",
        ".BR journalctl (1)",
        "",
    ]
    return "\n".join(out)


def md_cell(text):
    return text.replace("|", "\\|")


def markdown(keys):
    out = [
        "# voxbridge.conf: configuration keys",
        "",
        "<!-- Generated by packaging/gen-conf-docs.py from `voxbridge --config-keys`;",
        "     run `make update-conf-docs` after changing the key table. -->",
        "",
        "The server reads one file, `/etc/voxbridge/voxbridge.conf` by default "
        "(`voxbridge -c FILE` for another). The same text is the man page "
        "voxbridge.conf(5).",
        "",
    ]
    for p in INTRO:
        out += [p, ""]
    for title, ks in grouped(keys):
        out += ["## %s" % title, ""]
        if title == "Assistants":
            out += [ASSISTANT_NOTE, ""]
        out += ["| key | default | applies on | meaning |", "|---|---|---|---|"]
        for k in ks:
            default = ("" if k["default"] == "-" else "empty" if k["default"] == "(empty)"
                       else "`%s`" % md_cell(k["default"]))
            out.append("| `%s` | %s | %s | %s |" % (md_cell(k["name"]), default, k["when"],
                                                  md_cell(k["doc"])))
        out.append("")
    out += ["## Example", "", "```", EXAMPLE, "```", ""]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--man", help="write voxbridge.conf(5) here")
    ap.add_argument("--md", help="write docs/configuration.md here")
    ap.add_argument("--version", default="", help="version for the man page header")
    args = ap.parse_args()
    keys = read_table(sys.stdin)
    if args.man:
        with open(args.man, "w") as f:
            f.write(man_page(keys, args.version))
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(keys))
    if not args.man and not args.md:
        sys.stdout.write(man_page(keys, args.version))


if __name__ == "__main__":
    main()
