"""Private PostgreSQL and Redis servers for integration tests: each test (or
test class) gets its own throw-away instance on a free loopback port, started
from the installed binaries and stopped (and its files removed) on teardown.
Python 3 standard library only.

    pg = services.start_postgres()      # initdb + pg_ctl start, database created
    pg.url                              # postgresql://voxbridge@127.0.0.1:PORT/voxbridge
    pg.psql("SELECT 1")                 # [['1']]: rows of text fields (None for NULL)
    pg.value("SELECT count(*) FROM calls")   # '0': first field of the first row
    pg.stop(); pg.start()               # take the database away and bring it back
    pg.close()                          # stop and remove everything

    rd = services.start_redis()         # redis-server, no persistence
    rd.url                              # redis://127.0.0.1:PORT/0
    rd.command("SMEMBERS", "k", db=1)   # the reply: bytes, int, list, None or RedisError
    rd.close()

PostgreSQL refuses to run as root: when the tests run as root, initdb, pg_ctl
and postgres run as an unprivileged system account (PG_USER, created with
useradd --system --no-create-home when missing) through runuser, and the
temporary directory is owned by it. Clients (psql, voxbridge) connect over TCP
to 127.0.0.1 with trust authentication, so they may run as anyone.

Environment: VB_PG_BINDIR (default /usr/lib/postgresql/15/bin, else the newest
in /usr/lib/postgresql/*/bin, else PATH), VB_REDIS_SERVER (default
redis-server on PATH), VB_KEEP=1 keeps the data directories.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

PG_USER = "voxbridge-test"   # OS account that runs postgres when we are root
DB_USER = "voxbridge"        # the cluster's superuser, and voxbridge's role
DB_NAME = "voxbridge"


class ServiceError(AssertionError):
    pass


class RedisError(Exception):
    """An error reply from Redis."""


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise ServiceError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def pg_bindir():
    env = os.environ.get("VB_PG_BINDIR")
    if env:
        return env
    if os.path.exists("/usr/lib/postgresql/15/bin/initdb"):
        return "/usr/lib/postgresql/15/bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def have_postgres():
    d = pg_bindir()
    return bool(d) and os.access(os.path.join(d, "initdb"), os.X_OK)


def have_redis():
    return shutil.which(os.environ.get("VB_REDIS_SERVER", "redis-server")) is not None


def ensure_pg_user():
    """The account postgres runs as when we are root (created if missing)."""
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", PG_USER], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return PG_USER


# ---------------------------------------------------------------- PostgreSQL

class Postgres:
    """A throw-away PostgreSQL cluster: DATA_DIR in a temp dir, listening on
    127.0.0.1:PORT and on a unix socket inside the temp dir."""

    def __init__(self):
        if not have_postgres():
            raise unittest.SkipTest("PostgreSQL server binaries not found (VB_PG_BINDIR)")
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="vb-pg-")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.user = DB_USER
        self.dbname = DB_NAME
        self.runas = None
        if os.geteuid() == 0:
            self.runas = ensure_pg_user()
            ent = pwd.getpwnam(self.runas)
            os.chown(self.dir, ent.pw_uid, ent.pw_gid)
        os.chmod(self.dir, 0o755)
        self.running = False

    @property
    def url(self):
        """What voxbridge's database_url should say."""
        return "postgresql://%s@%s:%d/%s" % (self.user, self.host, self.port, self.dbname)

    def _cmd(self, name, *args):
        argv = [os.path.join(self.bindir, name)] + list(args)
        if self.runas:
            argv = ["runuser", "-u", self.runas, "--"] + argv
        return argv

    def _run(self, name, *args, timeout=60):
        p = subprocess.run(self._cmd(name, *args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, cwd=self.dir)
        if p.returncode != 0:
            raise ServiceError("%s failed (%d):\n%s\n%s" % (
                name, p.returncode, p.stdout.decode(errors="replace"), self.log_tail()))
        return p.stdout.decode(errors="replace")

    def initdb(self):
        self._run("initdb", "-D", self.data_dir, "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
            f.write("\n# vb tests\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\nmax_connections = 100\n" % (self.port, self.dir))

    def start(self, timeout=30):
        """Starts the server and waits until it accepts connections."""
        self._run("pg_ctl", "-D", self.data_dir, "-l", self.log_path, "-w", "-t",
                  str(int(timeout)), "start", timeout=timeout + 10)
        self.running = True
        _wait(self.ready, timeout, "PostgreSQL on port %d" % self.port)
        return self

    def stop(self, mode="fast"):
        """Stops the server (mode fast: disconnect clients; immediate: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop")
            self.running = False

    def ready(self):
        p = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", self.host, "-p",
                            str(self.port), "-U", self.user, "-d", "postgres", "-q"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.returncode == 0

    def create_database(self):
        self.psql("CREATE DATABASE %s" % self.dbname, dbname="postgres")

    def psql(self, sql, dbname=None, check=True):
        """Runs SQL (one or more statements) with psql; returns the rows of the
        last statement as lists of text fields (None for NULL)."""
        argv = [os.path.join(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port), "-U", self.user,
                "-d", dbname or self.dbname, "-A", "-t", "-F", "\x1f", "-P", "null=\x1e",
                "-c", sql]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            if not check:
                return None
            raise ServiceError("psql failed: %s\nSQL: %s" % (
                p.stderr.decode(errors="replace").strip(), sql))
        rows = []
        for line in p.stdout.decode().split("\n"):
            if line == "":
                continue
            rows.append([None if f == "\x1e" else f for f in line.split("\x1f")])
        return rows

    def value(self, sql):
        rows = self.psql(sql)
        return rows[0][0] if rows and rows[0] else None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def close(self):
        try:
            self.stop("immediate")
        except (ServiceError, subprocess.TimeoutExpired):
            pass
        if os.environ.get("VB_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres():
    """A new cluster, started, with an empty database DB_NAME owned by DB_USER.
    Skips the test (unittest.SkipTest) when PostgreSQL is not installed."""
    pg = Postgres()
    try:
        pg.initdb()
        pg.start()
        pg.create_database()
    except BaseException:
        pg.close()
        raise
    return pg


# --------------------------------------------------------------------- Redis

class Redis:
    """A throw-away redis-server on 127.0.0.1:PORT, nothing written to disk."""

    def __init__(self):
        exe = shutil.which(os.environ.get("VB_REDIS_SERVER", "redis-server"))
        if exe is None:
            raise unittest.SkipTest("redis-server not found (VB_REDIS_SERVER)")
        self.exe = exe
        self.dir = tempfile.mkdtemp(prefix="vb-redis-")
        self.port = _free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "redis.log")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10):
        argv = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--logfile", self.log_path,
                "--daemonize", "no", "--protected-mode", "no"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise ServiceError("redis-server exited with %s" % self.proc.returncode)
            try:
                return self.command("PING") == b"PONG"
            except OSError:
                return False
        _wait(up, timeout, "Redis on port %d" % self.port)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def command(self, *args, db=None, timeout=5):
        """One command on a fresh connection (after SELECT DB when given);
        returns the parsed reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            reply = None
            for cmd in ([("SELECT", db)] if db is not None else []) + [args]:
                out = b"*%d\r\n" % len(cmd)
                for a in cmd:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
                reply = _resp_read(f)
            return reply

    def close(self):
        self.stop()
        if os.environ.get("VB_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad reply from Redis: %r" % line)


def start_redis():
    """A new redis-server, started and answering PING. Skips the test when
    redis-server is not installed."""
    rd = Redis()
    try:
        rd.start()
    except BaseException:
        rd.close()
        raise
    return rd
