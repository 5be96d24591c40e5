#!/usr/bin/env python3
"""The package test, run as root by tests/packaging/run.sh: what an operator does
with the .deb, checked step by step.

 1. `make dist` in the build dir; the .deb built from that tarball with
    `dpkg-buildpackage -us -uc -b` (debian/ = packaging/deb/), lintian without
    errors; the .rpm built from the same tarball with `rpmbuild -tb`, its scriptlets
    and config files, and its file list equal to the .deb's.
 2. `dpkg -i` (then `apt-get -f install` for missing dependencies): the voxbridge
    account, its directories, the config's permissions, the unit enabled but not
    started, `systemd-analyze verify` on the unit, `voxbridge -t` on the config.
 3. The installed binary run the way the unit runs it: ExecStart as User=voxbridge
    with no capabilities and no_new_privs, in a mount namespace where / is read-only
    but the unit's ReadWritePaths (ProtectSystem=strict), /tmp is private and /home
    and /root are empty, with NOTIFY_SOCKET to read its sd_notify messages; against
    a private PostgreSQL and Redis when tests/integration/services.py can start them
    (and `voxbridge migrate` exists), else with the call records in the spool.
    One call; a second call across the unit's ExecReload (SIGHUP) that must not
    drop; SIGUSR1 after the log file was moved; SIGTERM: STOPPING=1, exit 0, no
    process left.
 4. `dpkg -r` keeps the config and the data; `dpkg --purge` leaves nothing.

Every check prints PASS/FAIL/SKIP; the last line is "N passed, N failed[, N skipped]".
The package is purged and every process stopped even when a step fails.
Environment: VB_KEEP=1 keeps the work directory; VB_PKG_NO_RPM=1 skips the rpm;
VB_PKG_NO_LINTIAN=1 skips lintian.
"""

import argparse
import glob
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKEN = "package-test-auth-token-0123456789abcdef"
NUMBER = "+15550000001"
LOCAL_NUMBER = "+15550000002"   # the offline voice (espeak-ng, pocketsphinx)
CONF = "/etc/voxbridge/voxbridge.conf"
STATE = "/var/lib/voxbridge"
LOGDIR = "/var/log/voxbridge"
USER = "voxbridge"


class Abort(Exception):
    """A step failed in a way that makes the following ones meaningless."""


class Report:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("PASS: %s" % name, flush=True)
        else:
            self.failed += 1
            print("FAIL: %s%s" % (name, (": " + detail) if detail else ""), flush=True)
        return ok

    def require(self, name, ok, detail=""):
        if not self.check(name, ok, detail):
            raise Abort(name)

    def skip(self, name, why):
        self.skipped += 1
        print("SKIP: %s (%s)" % (name, why), flush=True)

    def note(self, text):
        print("  .. %s" % text, flush=True)

    def summary(self):
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        return line


R = Report()


def run(argv, timeout=600, log=None, env=None, cwd=None, check=False, input=None):
    """Runs ARGV; returns (rc, output). With LOG the output goes to that file."""
    out = open(log, "w") if log else subprocess.PIPE
    try:
        p = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                           env=env, cwd=cwd, input=input, universal_newlines=True)
    finally:
        if log:
            out.close()
    text = open(log).read() if log else p.stdout
    if check and p.returncode != 0:
        raise Abort("%s exited %d:\n%s" % (" ".join(argv), p.returncode, tail(text)))
    return p.returncode, text


def tail(text, n=25):
    return "\n".join(text.rstrip().splitlines()[-n:])


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except (OSError, ValueError):
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise Abort("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def eventually(pred, timeout, interval=0.05):
    """True when PRED becomes true within TIMEOUT seconds."""
    try:
        return bool(wait_until(pred, timeout, "a condition", interval))
    except Abort:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def installed():
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", "voxbridge"])
    return rc == 0 and "installed" in out.split()[-1:]


def dpkg_known():
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", "voxbridge"])
    return rc == 0 and out.strip() not in ("", "unknown ok not-installed")


# ------------------------------------------------------------------ building

def package_version(builddir):
    with open(os.path.join(builddir, "config.h")) as f:
        m = re.search(r'#define PACKAGE_VERSION "([^"]+)"', f.read())
    if not m:
        raise Abort("no PACKAGE_VERSION in %s/config.h" % builddir)
    return m.group(1)


def make_dist(builddir, work, version):
    tarball = os.path.join(builddir, "voxbridge-%s.tar.gz" % version)
    rc, out = run(["make", "-C", builddir, "dist-gzip"], log=os.path.join(work, "dist.log"))
    R.require("make dist makes voxbridge-%s.tar.gz" % version,
              rc == 0 and os.path.exists(tarball), tail(out))
    dest = os.path.join(work, os.path.basename(tarball))
    shutil.copy(tarball, dest)
    return dest


def deb_revision():
    with open(os.path.join(SRCDIR, "packaging", "deb", "changelog")) as f:
        m = re.match(r"voxbridge \(([^)]+)\)", f.readline())
    return m.group(1) if m else "?"


def build_deb(tarball, work, version):
    src = os.path.join(work, "deb")
    os.makedirs(src)
    run(["tar", "-xzf", tarball, "-C", src], check=True)
    tree = os.path.join(src, "voxbridge-%s" % version)
    # a clean tree: the tarball plus debian/ from packaging/deb
    shutil.copytree(os.path.join(tree, "packaging", "deb"), os.path.join(tree, "debian"))
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=%d" % (os.cpu_count() or 2))
    t0 = time.monotonic()
    log = os.path.join(work, "deb-build.log")
    rc, out = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, env=env, log=log,
                  timeout=900)
    _, arch = run(["dpkg", "--print-architecture"])
    deb = os.path.join(src, "voxbridge_%s_%s.deb" % (deb_revision(), arch.strip()))
    R.require("dpkg-buildpackage -us -uc -b builds %s (%.0f s)" % (
        os.path.basename(deb), time.monotonic() - t0), rc == 0 and os.path.exists(deb),
        "exit %d, see %s:\n%s" % (rc, log, tail(out)))
    return deb


def deb_files(deb):
    """Paths of the regular files and symlinks in the .deb."""
    _, out = run(["dpkg-deb", "-c", deb], check=True)
    files = []
    for line in out.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[0].startswith("d"):
            continue
        path = parts[5].split(" -> ")[0]
        files.append(path[1:] if path.startswith("./") else path)
    return sorted(files)


def check_deb(deb, version):
    files = deb_files(deb)
    want = ["/usr/sbin/voxbridge", "/usr/bin/voxbridge-callsim", CONF,
            "/etc/logrotate.d/voxbridge", "/usr/lib/sysusers.d/voxbridge.conf",
            "/usr/lib/tmpfiles.d/voxbridge.conf", "/usr/share/man/man8/voxbridge.8.gz",
            "/usr/share/man/man5/voxbridge.conf.5.gz",
            "/usr/share/man/man1/voxbridge-callsim.1.gz",
            "/usr/share/doc/voxbridge/copyright"]
    want += ["/usr/share/voxbridge/sql/" + os.path.basename(p)
             for p in sorted(glob.glob(os.path.join(SRCDIR, "sql", "*.sql")))]
    missing = [p for p in want if p not in files]
    units = [p for p in files if p.endswith("/systemd/system/voxbridge.service")]
    R.check("the .deb holds the programs, config, unit, sysusers, tmpfiles, logrotate, "
            "man pages and %d SQL migrations" % len(glob.glob(os.path.join(SRCDIR, "sql", "*.sql"))),
            not missing and len(units) == 1, "missing: %s %s" % (
                missing, "" if units else "voxbridge.service"))
    outside = [p for p in files if not p.startswith(("/usr/", "/etc/voxbridge/",
                                                     "/etc/logrotate.d/", "/lib/systemd/"))]
    R.check("the .deb installs nothing outside /usr, /etc/voxbridge, /etc/logrotate.d and "
            "the unit directory", not outside, "outside: %s" % outside)
    scripts = {}
    for name in ("preinst", "postinst", "prerm", "postrm"):
        rc, text = run(["dpkg-deb", "--info", deb, name])
        scripts[name] = text if rc == 0 else ""
    R.check("maintainer scripts: postinst creates the account and enables the unit without "
            "starting it, try-restarts it on upgrade; prerm stops it on remove only; postrm "
            "deletes data only on purge",
            "adduser" in scripts["postinst"] and "deb-systemd-helper enable" in scripts["postinst"]
            and "try-restart" in scripts["postinst"]
            and not re.search(r"deb-systemd-invoke (start|restart)", scripts["postinst"])
            and "deb-systemd-invoke stop" not in scripts["preinst"]
            and re.search(r'"\$1" = remove.*\n.*deb-systemd-invoke stop', scripts["prerm"])
            and re.search(r"purge\)\n\s+rm -rf /var/lib/voxbridge", scripts["postrm"]),
            "see dpkg-deb --info %s postinst|prerm|postrm" % deb)
    _, conffiles = run(["dpkg-deb", "--info", deb, "conffiles"])
    R.check("%s is a conffile (never overwritten when edited)" % CONF,
            CONF in conffiles.split(), conffiles.strip())
    fields = {}
    for f in ("Depends", "Recommends", "Suggests", "Version", "Architecture"):
        _, v = run(["dpkg-deb", "--field", deb, f])
        fields[f] = v.strip()
    dep = fields["Depends"]
    needed = needed_packages(deb)
    dep_names = {d.strip().split()[0].split(":")[0] for alt in dep.split(",")
                 for d in alt.split("|") if d.strip()}
    R.check("Depends (from shlibs) names the package of every library the programs link "
            "(%s), plus adduser and the offline voice's data" % ", ".join(sorted(needed)),
            needed and needed <= dep_names and {"adduser", "pocketsphinx-en-us",
                                                  "espeak-ng-data"} <= dep_names,
            "missing: %s; Depends: %s" % (sorted(needed - dep_names), dep))
    R.check("Recommends postgresql and redis-server, Suggests postgresql-client",
            "postgresql" in fields["Recommends"] and "redis-server" in fields["Recommends"]
            and "postgresql-client" in fields["Suggests"],
            "Recommends: %s; Suggests: %s" % (fields["Recommends"], fields["Suggests"]))
    R.check("the .deb's version %s is the tree's %s" % (fields["Version"], version),
            fields["Version"].split("-")[0] == version)
    return files


def needed_packages(deb):
    """The Debian packages holding the shared libraries (DT_NEEDED) of the .deb's
    programs, found through ldconfig's cache and dpkg -S."""
    tmp = tempfile.mkdtemp(prefix="vbpkg-x-")
    try:
        run(["dpkg-deb", "-x", deb, tmp], check=True)
        sonames = set()
        for prog in glob.glob(tmp + "/usr/sbin/*") + glob.glob(tmp + "/usr/bin/*"):
            _, out = run(["readelf", "-d", prog])
            sonames |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _, cache = run(["ldconfig", "-p"])
    paths = {}
    for line in cache.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2) or (m and m.group(1) not in paths):
            paths[m.group(1)] = m.group(3)
    pkgs = set()
    for so in sonames:
        path = paths.get(so)
        if path is None:
            pkgs.add("?" + so)
            continue
        for candidate in (path, os.path.realpath(path), re.sub(r"^/usr/lib/", "/lib/", path),
                          re.sub(r"^/lib/", "/usr/lib/", path)):
            rc, out = run(["dpkg", "-S", candidate])
            if rc == 0:
                pkgs.add(out.split(":")[0].strip())
                break
        else:
            pkgs.add("?" + so)
    return pkgs


def lintian(deb, work):
    if os.environ.get("VB_PKG_NO_LINTIAN") or not shutil.which("lintian"):
        R.skip("lintian reports no error", "lintian is not installed" if not shutil.which(
            "lintian") else "VB_PKG_NO_LINTIAN is set")
        return
    rc, out = run(["lintian", "--no-tag-display-limit", "--display-info", deb],
                  log=os.path.join(work, "lintian.log"), timeout=300)
    errors = [l for l in out.splitlines() if l.startswith("E:")]
    warnings = [l for l in out.splitlines() if l.startswith("W:")]
    R.check("lintian reports no error (%d warnings)" % len(warnings), not errors and rc in (0, 1)
            and "internal error" not in out.lower(), "\n".join(errors) or tail(out))
    for w in warnings:
        R.note(w)


def build_rpm(tarball, work, version):
    top = os.path.join(work, "rpm")
    os.makedirs(top)
    t0 = time.monotonic()
    log = os.path.join(work, "rpm-build.log")
    # --nodeps: Debian's rpm database knows none of the BuildRequires (they are
    # installed as .debs); the build itself is the same as on an RPM distribution.
    rc, out = run(["rpmbuild", "-tb", "--nodeps", "--nocheck", "--define", "_topdir " + top,
                   "--define", "debug_package %{nil}", tarball], log=log, timeout=900)
    rpms = glob.glob(os.path.join(top, "RPMS", "*", "voxbridge-%s-*.rpm" % version))
    R.require("rpmbuild -tb builds the .rpm from the tarball (%.0f s)" % (time.monotonic() - t0),
              rc == 0 and len(rpms) == 1, "exit %d, see %s:\n%s" % (rc, log, tail(out)))
    return rpms[0]


def rpm_files(rpm):
    _, out = run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm], check=True)
    return sorted(line.split(" ", 1)[1] for line in out.splitlines()
                  if line.strip() and not line.startswith("d"))


def normalise(path):
    """One name for the same file in both packages: the unit dir after the /usr
    merge, compressed man pages and docs, and no Debian-only doc files."""
    if path.startswith("/lib/"):
        path = "/usr" + path
    if path.endswith(".gz") and path.startswith(("/usr/share/man/", "/usr/share/doc/")):
        path = path[:-3]
    return path


DEB_ONLY = ("/usr/share/doc/voxbridge/copyright", "/usr/share/doc/voxbridge/changelog.Debian",
            "/usr/share/lintian/overrides/voxbridge")


def check_rpm(rpm, deb_list):
    rpm_list = rpm_files(rpm)
    d = {normalise(p) for p in deb_list} - set(DEB_ONLY)
    # rpm's /usr/lib/.build-id links are its own metadata, not files of the package
    r = {normalise(p) for p in rpm_list if not p.startswith("/usr/lib/.build-id/")}
    R.check("rpm -qlp lists the same %d files as the .deb" % len(d), d == r,
            "only in the .deb: %s; only in the .rpm: %s" % (sorted(d - r), sorted(r - d)))
    _, scripts = run(["rpm", "-qp", "--scripts", rpm], check=True)
    R.check("the rpm's scriptlets create the voxbridge user (%pre), run tmpfiles and "
            "preset the unit (%post), disable/stop it on erase (%preun) and try-restart "
            "it on upgrade (%postun)",
            all(s in scripts for s in ("useradd", "systemd-tmpfiles --create",
                                        "preset voxbridge.service",
                                        "disable --now voxbridge.service",
                                        "try-restart voxbridge.service")), tail(scripts, 40))
    _, cfg = run(["rpm", "-qp", "--configfiles", rpm], check=True)
    R.check("the rpm marks voxbridge.conf and the logrotate file as config",
            CONF in cfg.split() and "/etc/logrotate.d/voxbridge" in cfg.split(), cfg)
    _, info = run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}"
                   " %{FILENAMES}\n]", rpm], check=True)
    R.check("the rpm owns /var/lib/voxbridge (0750 voxbridge) and voxbridge.conf is 0640 "
            "root:voxbridge", "drwxr-x--- voxbridge:voxbridge /var/lib/voxbridge" in info
            and "-rw-r----- root:voxbridge %s" % CONF in info, info)


# ------------------------------------------------------------ installing

def install(deb, work):
    rc, out = run(["dpkg", "-i", deb], log=os.path.join(work, "dpkg-i.log"), timeout=300)
    if rc != 0:
        R.note("dpkg -i exited %d (missing dependencies?): apt-get -f install" % rc)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        rc2, out2 = run(["apt-get", "-f", "install", "-y", "--no-install-recommends"], env=env,
                        log=os.path.join(work, "apt-f.log"), timeout=600)
        out += out2
    R.require("dpkg -i installs the package", installed(), tail(out))
    return out


def unit_path():
    for d in ("/lib/systemd/system", "/usr/lib/systemd/system"):
        p = os.path.join(d, "voxbridge.service")
        if os.path.exists(p):
            return p
    raise Abort("no voxbridge.service installed")


def read_unit(path):
    unit = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                continue
            k, v = line.split("=", 1)
            unit.setdefault(k.strip(), []).append(v.strip())
    return unit


def check_installed(install_out):
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        pw = None
    R.require("the voxbridge system account exists, with no login shell",
              pw is not None and pw.pw_uid < 1000 and pw.pw_shell.endswith(("nologin", "false")),
              str(pw))
    bad = []
    for d in (STATE, STATE + "/spool", STATE + "/recordings", LOGDIR):
        try:
            st = os.stat(d)
            if st.st_uid != pw.pw_uid or stat.S_IMODE(st.st_mode) != 0o750:
                bad.append("%s %o uid %d" % (d, stat.S_IMODE(st.st_mode), st.st_uid))
        except OSError as e:
            bad.append(str(e))
    R.check("postinst made %s (spool, recordings) and %s, 0750 voxbridge" % (STATE, LOGDIR),
            not bad, "; ".join(bad))
    st = os.stat(CONF)
    R.check("%s is 0640 root:voxbridge (it holds secrets)" % CONF,
            stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0 and st.st_gid == pw.pw_gid,
            "%o %d:%d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    wants = "/etc/systemd/system/multi-user.target.wants/voxbridge.service"
    R.check("the service is enabled (%s)" % wants, os.path.islink(wants))
    running = [p for p in pids_of_user(pw.pw_uid)]
    R.check("the service was not started before it is configured",
            not running and "not started" in install_out, "voxbridge processes: %s" % running)


def check_unit():
    path = unit_path()
    unit = read_unit(path)

    def one(k):
        return (unit.get(k) or [""])[-1]
    stop = int(re.sub(r"s$", "", one("TimeoutStopSec")) or 0)
    ok = (one("Type") == "notify" and one("KillMode") == "mixed" and one("User") == USER
          and "/bin/kill -HUP $MAINPID" in unit.get("ExecReload", []) and stop > 30
          and one("NoNewPrivileges") == "yes" and one("ProtectSystem") == "strict"
          and one("PrivateTmp") == "yes" and one("ProtectHome") == "yes"
          and one("RestrictAddressFamilies") and int(one("LimitNOFILE") or 0) >= 65536
          and any("/var/lib/voxbridge" in v for v in unit.get("ReadWritePaths", [])))
    R.check("the unit: Type=notify, User=voxbridge, ExecReload kill -HUP, KillMode=mixed, "
            "TimeoutStopSec %ds > shutdown_timeout, hardening, state dir writable" % stop, ok,
            json.dumps(unit))
    if shutil.which("systemd-analyze"):
        rc, out = run(["systemd-analyze", "verify", path])
        R.check("systemd-analyze verify %s" % path, rc == 0, out)
    else:
        R.skip("systemd-analyze verify", "systemd-analyze is not installed")
    return unit


def check_config_test():
    rc, out = run(["/usr/sbin/voxbridge", "-t"])
    R.check("voxbridge -t accepts the installed %s (the default path)" % CONF,
            rc == 0 and CONF in out, out)
    rc, out = run(["setpriv", "--reuid", USER, "--regid", USER, "--init-groups",
                   "/usr/sbin/voxbridge", "-t", "-c", CONF])
    R.check("the voxbridge account can read the config", rc == 0, out)
    if shutil.which("logrotate"):
        rc, out = run(["logrotate", "--debug", "/etc/logrotate.d/voxbridge"])
        R.check("logrotate accepts /etc/logrotate.d/voxbridge", rc == 0, tail(out))


# ---------------------------------------------------------------- running

def pids_of_user(uid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat("/proc/" + d).st_uid == uid:
                    out.append(int(d))
            except OSError:
                pass
    return out


class Notify:
    """The NOTIFY_SOCKET systemd would give a Type=notify service."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(prefix="vbpkg-notify-", dir="/run")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.sock.setblocking(False)
        self.seen = []

    def poll(self):
        while True:
            try:
                msg = self.sock.recv(4096).decode(errors="replace")
            except BlockingIOError:
                return self.seen
            self.seen.extend(msg.split("\n"))

    def wait_for(self, state, after, timeout, what):
        return wait_until(lambda: state in self.poll()[after:], timeout, what)

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ExecStart under the unit's sandbox, as far as it can be reproduced without
# systemd: own mount namespace, / read-only but ReadWritePaths (ProtectSystem=
# strict), private /tmp and /var/tmp (PrivateTmp), empty /home and /root
# (ProtectHome), then User=/Group= with no capabilities and no_new_privs.
SANDBOX = r'''
set -e
for p in $VB_RW; do
    case $p in -*) p=${p#-}; [ -e "$p" ] || continue;; esac
    mount --bind "$p" "$p"
done
mount -o remount,bind,ro /
for m in $(awk '$2 ~ "^/(usr|etc|boot|opt|var)(/|$)" {print $2}' /proc/self/mounts); do
    case " $VB_RW " in *" $m "*|*" -$m "*) ;; *) mount -o remount,bind,ro "$m" || true;; esac
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /home
mount -t tmpfs -o mode=0700 tmpfs /root
exec setpriv --reuid="$VB_USER" --regid="$VB_GROUP" --init-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
'''


class Server:
    def __init__(self, unit, work):
        self.unit = unit
        self.work = work
        self.proc = None
        self.notify = Notify(work)
        self.stderr_path = os.path.join(work, "voxbridge.stderr")

    def argv(self):
        return self.unit["ExecStart"][-1].split()

    def start(self):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "NOTIFY_SOCKET": self.notify.path,
               "VB_RW": " ".join(" ".join(v.split()) for v in self.unit["ReadWritePaths"]),
               "VB_USER": self.unit["User"][-1], "VB_GROUP": self.unit["Group"][-1]}
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", SANDBOX,
             "sandbox"] + self.argv(), env=env, stdin=subprocess.DEVNULL,
            stdout=open(self.stderr_path, "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        text = ""
        for p in (self.stderr_path, LOGDIR + "/voxbridge.log", LOGDIR + "/voxbridge.log.1"):
            if os.path.exists(p):
                text += "--- %s\n%s\n" % (p, tail(open(p, errors="replace").read(), 30))
        return text

    def reload_commands(self):
        """The unit's ExecReload lines, as systemd would run them (as User=)."""
        out = []
        for line in self.unit.get("ExecReload", []):
            argv = [a.replace("$MAINPID", str(self.proc.pid)) for a in line.split()]
            if argv[0].startswith("-"):
                argv[0] = argv[0][1:]
            out.append(["setpriv", "--reuid", USER, "--regid", USER, "--init-groups"] + argv)
        return out

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(10)
        try:
            uid = pwd.getpwnam(USER).pw_uid
            for pid in pids_of_user(uid):
                os.kill(pid, signal.SIGKILL)
        except (KeyError, OSError):
            pass


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as r:
        return r.status, r.read().decode()


def counter(port, name):
    _, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith("voxbridge_%s_total " % name):
            return float(line.split()[-1])
    return 0.0


def callsim(port, duration, log, background=False):
    argv = ["/usr/bin/voxbridge-callsim", "--url", "http://127.0.0.1:%d" % port,
            "--token", TOKEN, "--to", NUMBER, "--duration", str(duration)]
    f = open(log, "w")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=f, universal_newlines=True)
    if background:
        return p
    return finish_callsim(p, 60)


def finish_callsim(p, timeout):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    summary = None
    for line in reversed(out.strip().splitlines()):
        if line.strip().startswith("{"):
            try:
                summary = json.loads(line)
            except ValueError:
                pass
            break
    return p.returncode, summary, out


def call_ok(rc, summary, max_gap_ms=200):
    if rc != 0 or not summary or summary.get("answered") != 1:
        return False, "callsim exit %s, summary %s" % (rc, json.dumps(summary)[:600])
    pc = (summary.get("per_call") or [{}])[0]
    ok = (pc.get("result") == "answered" and pc.get("close_code") == 1000
          and not pc.get("server_closed") and pc.get("frames_sent", 0) > 0
          and pc.get("frames_received", 0) >= 0.9 * pc.get("frames_sent", 1)
          and pc.get("max_gap_ms", 1e9) <= max_gap_ms)
    return ok, json.dumps(pc)[:600]


def set_keys(path, changes):
    """Sets KEY = VALUE lines in the config as an operator would edit it; a value
    of None comments the key out."""
    with open(path) as f:
        lines = f.read().splitlines()
    done = set()
    out = []
    for line in lines:
        key = line.lstrip("#").split("=", 1)[0].strip()
        if "=" in line and key in changes and key not in done:
            v = changes[key]
            out.append("%s = %s" % (key, v) if v is not None else "#" + line.lstrip("#"))
            done.add(key)
        else:
            out.append(line)
    out += ["%s = %s" % (k, v) for k, v in changes.items() if k not in done and v is not None]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


class Services:
    """PostgreSQL and Redis from tests/integration/services.py, when it can start them."""

    def __init__(self):
        self.pg = self.rd = None
        sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
        try:
            import services
        except ImportError as e:
            R.note("no tests/integration/services.py (%s): running without a database" % e)
            return
        try:
            if services.have_redis():
                self.rd = services.start_redis()
        except Exception as e:  # noqa: BLE001 - any failure: run without it
            R.note("Redis could not be started (%s): running without it" % e)
        if not migrate_available():
            R.note("voxbridge has no 'migrate' command yet: call records are checked in "
                   "the spool, without PostgreSQL")
            return
        try:
            if services.have_postgres():
                self.pg = services.start_postgres()
        except Exception as e:  # noqa: BLE001
            R.note("PostgreSQL could not be started (%s): running without it" % e)

    def close(self):
        for s in (self.pg, self.rd):
            if s is not None:
                try:
                    s.close()
                except Exception:  # noqa: BLE001
                    pass


def migrate_available():
    _, out = run(["/usr/sbin/voxbridge", "--help"])
    return re.search(r"voxbridge migrate\b", out) is not None


def configure(services, api_port, media_port):
    keys = {
        "listen_api": "127.0.0.1:%d" % api_port,
        "listen_media": "127.0.0.1:%d" % media_port,
        "public_url": "http://127.0.0.1:%d" % api_port,
        "public_media_url": "ws://127.0.0.1:%d" % media_port,
        "twilio_auth_token": TOKEN,
        "workers": 2, "workers_min_spare": 1, "workers_max": 8, "brokers": 1,
        "api_workers": 1, "shutdown_timeout": 20,
        "log_file": LOGDIR + "/voxbridge.log",
        "assistant.echo.mode": "echo",
        "number." + NUMBER: "echo",
    }
    if services.pg is not None:
        keys["database_url"] = services.pg.url
    if services.rd is not None:
        keys["redis_url"] = services.rd.url
    set_keys(CONF, keys)
    rc, out = run(["/usr/sbin/voxbridge", "-t"])
    R.require("voxbridge -t accepts the configured file (ports %d/%d%s%s)" % (
        api_port, media_port, ", PostgreSQL" if services.pg else "",
        ", Redis" if services.rd else ""), rc == 0, out)
    if services.pg is not None:
        rc, out = run(["setpriv", "--reuid", USER, "--regid", USER, "--init-groups",
                       "/usr/sbin/voxbridge", "migrate"], timeout=120)
        R.check("voxbridge migrate applies the packaged migrations", rc == 0, tail(out))


def spool_records():
    out = []
    for p in glob.glob(STATE + "/spool/*.jsonl"):
        with open(p) as f:
            for line in f:
                if line.endswith("\n") and line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    return out


def run_server(unit, work, services):
    api_port, media_port = free_port(), free_port()
    configure(services, api_port, media_port)
    srv = Server(unit, work)
    try:
        exercise(srv, work, services, api_port)
    except Abort:
        R.note("server output:\n" + srv.output())
        raise
    finally:
        srv.kill()
        srv.notify.close()


def exercise(srv, work, services, port):
    n = srv.notify
    pid = srv.start()
    n.wait_for("READY=1", 0, 20, "READY=1 on NOTIFY_SOCKET")
    R.check("ExecStart runs as voxbridge in the unit's sandbox and sends READY=1",
            os.stat("/proc/%d" % pid).st_uid == pwd.getpwnam(USER).pw_uid)
    status, _ = wait_until(lambda: http_get(port, "/health/live"), 10, "/health/live")
    R.check("/health/live answers 200", status == 200)

    rc, summary, out = callsim(port, 4, os.path.join(work, "call1.err"))
    ok, detail = call_ok(rc, summary)
    R.check("a simulated call is answered and echoed back", ok, detail)

    # a second call, across `systemctl reload` (the unit's ExecReload lines)
    reloads = counter(port, "config_reloads")
    started = counter(port, "calls_started")
    p = callsim(port, 8, os.path.join(work, "call2.err"), background=True)
    wait_until(lambda: counter(port, "calls_started") > started, 10, "the second call to start")
    time.sleep(1.0)  # the call is under way: audio flows both ways
    mark = len(n.poll())
    results = [run(argv) for argv in srv.reload_commands()]
    R.check("the unit's ExecReload lines succeed (voxbridge -t, kill -HUP $MAINPID)",
            all(rc == 0 for rc, _ in results), str(results))
    n.wait_for("RELOADING=1", mark, 10, "RELOADING=1 after SIGHUP")
    n.wait_for("READY=1", n.seen.index("RELOADING=1", mark) + 1, 10, "READY=1 after the reload")
    wait_until(lambda: counter(port, "config_reloads") > reloads, 10, "the reload to count")
    R.check("SIGHUP reloads: RELOADING=1, READY=1, voxbridge_config_reloads_total + 1", True)
    rc, summary, out = finish_callsim(p, 60)
    ok, detail = call_ok(rc, summary)
    R.check("the call in progress across the reload is not dropped (no gap over 200 ms)",
            ok, detail)

    # SIGUSR1: what logrotate's postrotate sends after moving the file
    log = LOGDIR + "/voxbridge.log"
    if os.path.exists(log):
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGUSR1)
        wait_until(lambda: os.path.exists(log), 10, "the log file to be reopened")
        st = os.stat(log)
        R.check("SIGUSR1 reopens %s after it was moved (as the voxbridge user)" % log,
                st.st_uid == pwd.getpwnam(USER).pw_uid)
    else:
        R.check("the master logs to log_file %s" % log, False, srv.output())

    if services.pg is not None:
        def calls():
            try:
                return int(services.pg.value("SELECT count(*) FROM calls"))
            except Exception:  # noqa: BLE001 - not there yet
                return -1
        R.check("both calls are recorded in PostgreSQL", eventually(lambda: calls() >= 2, 10),
                "calls rows: %s" % calls())
    else:
        def ended():
            return {r.get("call_id") for r in spool_records() if r.get("type") == "call.ended"}
        R.check("both calls are recorded in %s/spool (no database configured)" % STATE,
                eventually(lambda: len(ended()) >= 2, 5), "call.ended records: %d" % len(ended()))

    # SIGTERM: what `systemctl stop` sends (KillMode=mixed: the master only)
    mark = len(n.poll())
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    try:
        rc = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    n.poll()
    R.check("SIGTERM: STOPPING=1, the master exits 0 (%.1f s)" % (time.monotonic() - t0),
            rc == 0 and "STOPPING=1" in n.seen[mark:], "exit %s, notify %s" % (rc, n.seen))
    uid = pwd.getpwnam(USER).pw_uid
    R.check("no voxbridge process is left after the stop",
            eventually(lambda: not pids_of_user(uid), 10), str(pids_of_user(uid)))


# ------------------------------------------------------- under systemd itself

class Container:
    """The installed system booted with systemd as PID 1 by systemd-nspawn, on a
    throw-away overlay of / (a tmpfs holds every change), with its own network,
    pid and mount namespaces. Boots only vbtest.target (basic.target and what it
    pulls in), so the host's other services are not started in it."""

    def __init__(self, work):
        self.base = os.path.join(work, "ct")
        self.upper = os.path.join(self.base, "rw")
        self.root = os.path.join(self.base, "root")
        self.proc = None
        self.pid1 = None
        self.mounted = []

    def sh(self, *argv, timeout=60):
        return run(["nsenter", "-t", str(self.pid1), "-a", "--"] + list(argv), timeout=timeout)

    def mount(self):
        os.makedirs(self.upper)
        os.makedirs(self.root)
        run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "tmpfs", self.upper], check=True)
        self.mounted.append(self.upper)
        for d in ("upper", "work"):
            os.makedirs(os.path.join(self.upper, d))
        run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=/,upperdir=%s/upper,workdir=%s/work"
             % (self.upper, self.upper), self.root], check=True)
        self.mounted.append(self.root)

    def prepare(self, conf_changes):
        with open(os.path.join(self.root, "etc/machine-id"), "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        with open(os.path.join(self.root, "etc/systemd/system/vbtest.target"), "w") as f:
            f.write("[Unit]\nDescription=voxbridge package test\nRequires=basic.target\n"
                    "After=basic.target\nAllowIsolate=yes\n")
        set_keys(os.path.join(self.root, CONF.lstrip("/")), conf_changes)
        # A container image's policy-rc.d forbids maintainer scripts to start or
        # restart services; a server has none (the host keeps its own).
        policy = os.path.join(self.root, "usr/sbin/policy-rc.d")
        if os.path.lexists(policy):
            os.remove(policy)

    def boot(self):
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--link-journal=no",
             "--private-network", "--directory", self.root, "--boot", "--",
             "systemd.unit=vbtest.target"],
            stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.base, "..", "boot.log"), "w"),
            stderr=subprocess.STDOUT, start_new_session=True)

        def init_pid():
            if self.proc.poll() is not None:
                raise Abort("systemd-nspawn exited %d" % self.proc.returncode)
            _, out = run(["pgrep", "-P", str(self.proc.pid)])
            return int(out.split()[0]) if out.split() else None
        self.pid1 = wait_until(init_pid, 20, "the container's PID 1")
        wait_until(lambda: self.sh("systemctl", "is-system-running")[1].strip()
                   in ("running", "degraded"), 60, "the container to boot")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1:
                self.sh("systemctl", "poweroff", "--no-block")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for m in reversed(self.mounted):
            rc, _ = run(["umount", m])
            if rc != 0:
                run(["umount", "-l", m])
        self.mounted = []


def repack(deb, dest, version):
    """The same .deb under a later version: what an upgrade installs."""
    tree = dest + ".d"
    run(["dpkg-deb", "-R", deb, tree], check=True)
    control = os.path.join(tree, "DEBIAN", "control")
    text = re.sub(r"^Version: .*$", "Version: " + version, open(control).read(), flags=re.M)
    with open(control, "w") as f:
        f.write(text)
    run(["dpkg-deb", "-b", tree, dest], check=True)
    shutil.rmtree(tree)


def upgrade_under_systemd(ct, deb, port):
    """apt/dpkg upgrade while a call is up: the package try-restarts the running
    service, which drains the call first; the edited config stays."""
    _, old = run(["dpkg-deb", "--field", deb, "Version"])
    new = old.strip() + "+upgradetest1"
    repack(deb, os.path.join(ct.root, "root", "voxbridge-upgrade.deb"), new)
    pid_before = show(ct, "MainPID").get("MainPID")
    started = ct_calls_started(ct, port)
    p = ct_call(ct, port, 6, background=True)
    wait_until(lambda: ct_calls_started(ct, port) > started, 10, "the call to start")
    time.sleep(1.0)
    rc, out = ct.sh("dpkg", "-i", "/root/voxbridge-upgrade.deb", timeout=180)
    rc2, summary, _ = finish_callsim(p, 60)
    ok, detail = call_ok(rc2, summary)
    st = show(ct, "ActiveState", "MainPID")
    _, ver = ct.sh("dpkg-query", "-W", "-f=${Version}", "voxbridge")
    conf = open(os.path.join(ct.root, CONF.lstrip("/"))).read()
    R.check("under systemd: upgrading the package (dpkg -i %s) restarts the running service "
            "after the call in progress finished, and keeps the edited config" % new,
            rc == 0 and ok and ver.strip() == new and st.get("ActiveState") == "active"
            and st.get("MainPID") not in (None, "0", pid_before) and TOKEN in conf,
            "dpkg exit %d, version %s, %s, call: %s\n%s" % (rc, ver, st, detail, tail(out)))


def nspawn_usable():
    if not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        return "systemd-nspawn is not installed (Debian package systemd-container)"
    if os.path.exists("/run/systemd/system"):
        return None  # a real systemd host: the container is still the safe place
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "the kernel has no overlay file system"
    return None


def run_under_systemd(work, deb):
    why = nspawn_usable()
    if why:
        R.skip("the service under systemd (start, reload, logrotate, stop)", why)
        return
    ct = Container(work)
    try:
        ct.mount()
        # in its own network: no database or Redis there; records go to the spool
        ct.prepare({"database_url": None, "redis_url": None,
                    "assistant.offline.mode": "local",
                    "assistant.offline.first_message": "Hello, you are through to the test line.",
                    "number." + LOCAL_NUMBER: "offline"})
        ct.boot()
    except Abort as e:
        R.skip("the service under systemd (start, reload, logrotate, stop)",
               "could not boot a container here: %s" % str(e).splitlines()[0])
        ct.close()
        return
    try:
        systemd_checks(ct, deb)
    except Abort as e:
        _, journal = ct.sh("journalctl", "-u", "voxbridge", "--no-pager", "-n", "40")
        R.check("the service under systemd", False, "%s\n%s" % (e, journal))
    finally:
        ct.close()


def show(ct, *props):
    _, out = ct.sh("systemctl", "show", "voxbridge", "--property=" + ",".join(props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def ct_call(ct, port, duration, background=False, to=NUMBER):
    argv = ["nsenter", "-t", str(ct.pid1), "-a", "--", "/usr/bin/voxbridge-callsim",
            "--url", "http://127.0.0.1:%d" % port, "--token", TOKEN, "--to", to,
            "--duration", str(duration), "--quiet"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True)
    return p if background else finish_callsim(p, 60)


def ct_calls_started(ct, port):
    rc, out = ct.sh("curl", "-sf", "http://127.0.0.1:%d/metrics" % port)
    m = re.search(r"^voxbridge_calls_started_total (\S+)", out, re.M)
    return float(m.group(1)) if m else 0.0


def systemd_checks(ct, deb):
    port = int(re.search(r"^listen_api = [\d.]+:(\d+)", open(CONF).read(), re.M).group(1))
    st = show(ct, "UnitFileState")
    R.check("under systemd: the unit is enabled after install", st.get("UnitFileState") == "enabled",
            str(st))
    rc, out = ct.sh("systemctl", "start", "voxbridge", timeout=60)
    st = show(ct, "ActiveState", "SubState", "MainPID", "Type")
    R.require("under systemd: systemctl start returns once the master sent READY=1 "
              "(Type=notify, active/running)", rc == 0 and st.get("ActiveState") == "active"
              and st.get("SubState") == "running", "%s %s" % (out, st))
    _, status = ct.sh("cat", "/proc/%s/status" % st["MainPID"])
    fields = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.M))
    uid = str(pwd.getpwnam(USER).pw_uid)
    R.check("under systemd: the master runs as voxbridge with no capabilities, no_new_privs "
            "and a seccomp filter", fields.get("Uid", "").split()[:1] == [uid]
            and fields.get("CapEff") == "0000000000000000" and fields.get("NoNewPrivs") == "1"
            and fields.get("Seccomp") == "2", str({k: fields.get(k) for k in (
                "Uid", "CapEff", "NoNewPrivs", "Seccomp")}))

    rc, summary, _ = ct_call(ct, port, 4)
    ok, detail = call_ok(rc, summary)
    R.check("under systemd: a simulated call is answered and echoed back", ok, detail)

    # the offline voice's libraries and data under the same sandbox
    # (read-only system, MemoryDenyWriteExecute, the system call filter)
    rc, summary, _ = ct_call(ct, port, 5, to=LOCAL_NUMBER)
    pc = ((summary or {}).get("per_call") or [{}])[0]
    R.check("under systemd: a call to the offline-voice assistant is answered, hears the agent "
            "and ends cleanly", rc == 0 and pc.get("result") == "answered"
            and pc.get("close_code") == 1000 and not pc.get("server_closed")
            and pc.get("frames_received", 0) > 0 and show(ct, "ActiveState")["ActiveState"]
            == "active", json.dumps(pc)[:600])

    started = ct_calls_started(ct, port)
    p = ct_call(ct, port, 8, background=True)
    wait_until(lambda: ct_calls_started(ct, port) > started, 10, "the call to start")
    time.sleep(1.0)
    rc, out = ct.sh("systemctl", "reload", "voxbridge")
    rc2, summary, _ = finish_callsim(p, 60)
    ok, detail = call_ok(rc2, summary)
    R.check("under systemd: systemctl reload during a call succeeds and the call is not "
            "dropped", rc == 0 and ok, "reload exit %d %s; %s" % (rc, out, detail))

    conf = os.path.join(ct.root, CONF.lstrip("/"))
    good = open(conf).read()
    with open(conf, "a") as f:
        f.write("workers_max = many\n")
    rc, _ = ct.sh("systemctl", "reload", "voxbridge")
    st = show(ct, "ActiveState", "MainPID")
    with open(conf, "w") as f:
        f.write(good)
    R.check("under systemd: systemctl reload of a broken file fails and the service keeps "
            "running", rc != 0 and st.get("ActiveState") == "active", "exit %d %s" % (rc, st))

    if ct.sh("sh", "-c", "command -v logrotate")[0] == 0:
        log = LOGDIR + "/voxbridge.log"
        rc, out = ct.sh("logrotate", "--force", "/etc/logrotate.d/voxbridge")
        ct.sh("systemctl", "reload", "voxbridge")  # something to log
        rc2, ls = ct.sh("sh", "-c", "test -s %s && test -s %s.1 && stat -c %%U %s" % (log, log, log))
        R.check("under systemd: logrotate moves the log and its SIGUSR1 makes voxbridge write "
                "a new one", rc == 0 and rc2 == 0 and ls.strip() == USER, out + ls)

    upgrade_under_systemd(ct, deb, port)

    started = ct_calls_started(ct, port)
    p = ct_call(ct, port, 6, background=True)
    wait_until(lambda: ct_calls_started(ct, port) > started, 10, "the last call to start")
    time.sleep(1.5)
    t0 = time.monotonic()
    rc, out = ct.sh("systemctl", "stop", "voxbridge", timeout=120)
    took = time.monotonic() - t0
    rc2, summary, _ = finish_callsim(p, 60)
    ok, detail = call_ok(rc2, summary)
    st = show(ct, "ActiveState", "Result", "ExecMainStatus")
    R.check("under systemd: systemctl stop lets the call in progress finish (%.1f s), then "
            "the service ends cleanly (exit 0)" % took, rc == 0 and ok and took > 2.0
            and st.get("ActiveState") == "inactive" and st.get("Result") == "success"
            and st.get("ExecMainStatus") == "0", "%s; %s" % (st, detail))

    rc, out = ct.sh("systemd-analyze", "security", "voxbridge", "--no-pager")
    m = re.search(r"exposure level for voxbridge.service: ([\d.]+)", out)
    R.check("under systemd: systemd-analyze security rates the sandbox %s (below 3)" % (
        m.group(1) if m else "?"), m is not None and float(m.group(1)) < 3.0, tail(out, 5))


# --------------------------------------------------------------- removing

def remove_and_purge(deb_list):
    rc, out = run(["dpkg", "-r", "voxbridge"], timeout=300)
    R.check("dpkg -r removes the programs", rc == 0 and not os.path.exists("/usr/sbin/voxbridge"),
            tail(out))
    R.check("dpkg -r keeps the config, the account and the data",
            os.path.exists(CONF) and os.path.isdir(STATE + "/spool") and user_exists(),
            "conf %s, state %s" % (os.path.exists(CONF), os.path.isdir(STATE)))
    purge()
    left = [p for p in deb_list if os.path.lexists(p)]
    left += [p for p in ("/etc/voxbridge", STATE, LOGDIR,
                         "/etc/systemd/system/multi-user.target.wants/voxbridge.service",
                         "/var/lib/systemd/deb-systemd-helper-enabled/voxbridge.service.dsh-also")
             if os.path.lexists(p)]
    R.check("dpkg --purge leaves nothing behind (files, config, data, logs, account, "
            "dpkg record)", not left and not user_exists() and not group_exists()
            and not dpkg_known(), "left: %s, user %s, group %s, dpkg %s" % (
                left, user_exists(), group_exists(), dpkg_known()))


def purge():
    if dpkg_known():
        run(["dpkg", "--purge", "voxbridge"], timeout=300)


def user_exists():
    try:
        pwd.getpwnam(USER)
        return True
    except KeyError:
        return False


def group_exists():
    try:
        grp.getgrnam(USER)
        return True
    except KeyError:
        return False


# ------------------------------------------------------------------- main

def steps(builddir, work, build_only, state):
    if not build_only and (dpkg_known() or user_exists()):
        R.note("a voxbridge package or account is already here: purging it first")
        purge()
    version = package_version(builddir)
    tarball = make_dist(builddir, work, version)
    if build_only == "rpm":
        keep(build_rpm(tarball, work, version), builddir)
        return
    deb = build_deb(tarball, work, version)
    if build_only == "deb":
        keep(deb, builddir)
        return
    deb_list = check_deb(deb, version)
    lintian(deb, work)
    if os.environ.get("VB_PKG_NO_RPM"):
        R.skip("the .rpm and its file list", "VB_PKG_NO_RPM is set")
    elif not shutil.which("rpmbuild"):
        R.skip("the .rpm and its file list", "rpmbuild is not installed")
    else:
        try:
            check_rpm(build_rpm(tarball, work, version), deb_list)
        except Abort:
            pass  # the .deb's steps go on
    out = install(deb, work)
    check_installed(out)
    unit = check_unit()
    check_config_test()
    state["services"] = Services()
    try:
        run_server(unit, work, state["services"])
    except Abort as e:
        R.check("the installed server runs through its life cycle", False, str(e))
    run_under_systemd(work, deb)
    remove_and_purge(deb_list)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builddir")
    ap.add_argument("--build-only", choices=["deb", "rpm"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vbpkg-")
    state = {}
    t0 = time.monotonic()
    try:
        steps(os.path.abspath(args.builddir), work, args.build_only, state)
    except Abort as e:
        R.note("stopped after: %s" % e)
    except Exception as e:  # noqa: BLE001 - report, clean up, count as a failure
        R.check("the package test ran to the end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        if state.get("services") is not None:
            state["services"].close()
        try:
            if not args.build_only:
                purge()
        except Exception as e:  # noqa: BLE001
            R.check("purge on the way out", False, str(e))
        if os.environ.get("VB_KEEP"):
            R.note("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        R.note("took %.0f s" % (time.monotonic() - t0))
    print(R.summary())
    sys.exit(1 if R.failed else 0)


def keep(path, builddir):
    dest = os.path.join(builddir, "packages")
    os.makedirs(dest, exist_ok=True)
    shutil.copy(path, dest)
    R.note("%s" % os.path.join(dest, os.path.basename(path)))


if __name__ == "__main__":
    main()
