"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` run as
the unprivileged ``postgres`` user (the server refuses root) in a temporary
directory that user owns, listening on 127.0.0.1 on a free port with its
unix socket in that directory; stopped after. initdb runs once per session
(a template cluster); each server starts from a copy of it.

Fixtures::

    from tests.servers.postgres import postgres_server, postgres_fresh  # noqa: F401

``postgres_server`` (session) is shared: make your own database names with
``server.new_database()``. One cluster serves the session; each test module
gets it with what earlier modules made (databases, roles) dropped.
``postgres_fresh`` (function) is an empty cluster
of its own. The superuser ``server.user`` logs in over TCP with password
``server.password`` (scram-sha-256; it holds characters that need escaping
in a pgpass file); the test helpers connect as ``postgres`` over the socket.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading

import pytest

from tests.servers import free_port, serve, shared

OS_USER = "postgres"
USER = "packrat"
PASSWORD = "pg s3cr#t:p\"w'd\\x$y"


def bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    path = shutil.which("initdb")
    if path:
        return os.path.dirname(path)
    raise RuntimeError("initdb is not installed")


def _as_postgres():
    entry = pwd.getpwnam(OS_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


_template_lock = threading.Lock()
_template = None


def _initdb_template(bin_dir):
    """A cluster made by initdb once per session (postgres owns it); every
    server starts from a copy of it (cp -a: owner and modes kept), exactly
    as fresh as its own initdb would make it."""
    global _template
    with _template_lock:
        if _template and os.path.isdir(_template):
            return _template
        base = tempfile.mkdtemp(prefix="packrat-postgres-template-")
        entry = pwd.getpwnam(OS_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        data = os.path.join(base, "data")
        proc = subprocess.run(
            [os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, cwd=base, **_as_postgres())
        if proc.returncode != 0:
            raise RuntimeError("initdb failed: %s" % proc.stderr[-2000:])
        _template = data
        import atexit
        atexit.register(shutil.rmtree, base, True)
        return data


class Postgres:
    def __init__(self):
        self.user = USER
        self.password = PASSWORD
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        self._counter = 0
        self.bin = bindir()

    def _run_as_postgres(self, argv, **kw):
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.dir, **_as_postgres(), **kw)

    # -- life ---------------------------------------------------------------
    def start(self):
        self.dir = tempfile.mkdtemp(prefix="packrat-postgres-")
        entry = pwd.getpwnam(OS_USER)
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.port = free_port()
        self.log = os.path.join(self.dir, "server.log")
        proc = self._run_as_postgres(["cp", "-a", _initdb_template(self.bin), self.data])
        if proc.returncode != 0:
            raise RuntimeError("copying the initdb template failed: %s" % proc.stderr[-2000:])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as fh:
            fh.write("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                     "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                     "shared_buffers = 32MB\nmax_connections = 30\n"
                     % (self.port, self.socket_dir))
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as fh:
            fh.write("local all all trust\n"
                     "host all %s 127.0.0.1/32 scram-sha-256\n"
                     "host all all 127.0.0.1/32 trust\n" % USER)
        proc = self._run_as_postgres(
            [os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        if proc.returncode != 0:
            raise RuntimeError("pg_ctl start failed: %s %s" % (proc.stderr, self._log_tail()))
        # through stdin: the password must not be on any command line
        self.client(input="CREATE ROLE %s LOGIN SUPERUSER PASSWORD %s;\n" % (USER, self.quote(PASSWORD)))
        return self

    def stop(self):
        if self.dir and os.path.isdir(self.data):
            self._run_as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast",
                                   "-w", "stop"])
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self):
        try:
            with open(self.log) as fh:
                return fh.read()[-2000:]
        except OSError:
            return ""

    # -- client --------------------------------------------------------------
    def psql_argv(self, *args, db="postgres"):
        """psql as the superuser ``postgres`` over the socket (trust)."""
        return [shutil.which("psql") or os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", db] + list(args)

    def client(self, *args, db="postgres", input=None, check=True):
        if isinstance(input, str):
            input = input.encode()
        proc = subprocess.run(self.psql_argv(*args, db=db), input=input, capture_output=True)
        proc.stdout = proc.stdout.decode("utf-8", "surrogateescape")
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise RuntimeError("psql %s failed: %s" % (" ".join(args), proc.stderr))
        return proc

    def sql(self, query, db="postgres"):
        """Run SQL as postgres; unaligned output without headers."""
        return self.client("-At", "-c", query, db=db).stdout

    def restore(self, path_or_bytes, db="postgres", stop_on_error=True):
        data = path_or_bytes
        if not isinstance(data, bytes):
            with open(data, "rb") as fh:
                data = fh.read()
        args = [] if stop_on_error else ["-v", "ON_ERROR_STOP=0"]
        return self.client(*args, db=db, input=data)

    @staticmethod
    def quote(text):
        return "'" + text.replace("'", "''") + "'"

    def new_database(self, prefix="db"):
        self._counter += 1
        name = "%s_%d_%d" % (prefix, os.getpid(), self._counter)
        self.sql('CREATE DATABASE "%s"' % name)
        return name

    def databases(self):
        return [d for d in self.sql("SELECT datname FROM pg_database WHERE NOT datistemplate "
                                    "ORDER BY 1").split("\n") if d]

    def _made(self):
        """The databases and roles, decoded from hex (any name comes back as it is)."""
        return tuple({bytes.fromhex(h).decode("utf-8", "surrogateescape") for h in self.sql(
            "SELECT encode(convert_to(%s, 'UTF8'), 'hex') FROM %s" % what).split()}
            for what in (("datname", "pg_database"), ("rolname", "pg_roles")))

    def remember(self):
        """What the cluster holds when started (see forget())."""
        self._baseline = self._made()
        return self

    def forget(self):
        """Drop every database and role made since remember(): the cluster
        as a fresh one would be, for the next test module."""
        dbs, roles = self._made()
        ident = lambda name: '"%s"' % name.replace('"', '""')  # noqa: E731
        sql = ["DROP DATABASE %s WITH (FORCE);" % ident(name) for name in dbs - self._baseline[0]]
        sql += ["DROP OWNED BY %s; DROP ROLE %s;" % (ident(name), ident(name))
                for name in roles - self._baseline[1]]
        if not sql:
            return
        proc = self.client("-v", "ON_ERROR_STOP=0", input="\n".join(sql) + "\n", check=False)
        if self._made()[0] != self._baseline[0]:
            raise RuntimeError("postgres: cannot drop what earlier tests made: %s" % proc.stderr[-2000:])

    def fill(self, db, rows=50):
        """Two tables with awkward values: quotes, backslashes, NULL, UTF-8, bytea."""
        values = []
        for i in range(rows):
            values.append("(%d, %s, %s, %s, '\\x%02x00ff27'::bytea)" % (
                i, self.quote("name %d 'quoted' \\ \u00e9\u00df\u4e2d" % i),
                "NULL" if i % 7 == 0 else self.quote("line one\nline two\t%d" % i),
                "NULL" if i % 5 == 0 else "'2001-02-%02d'" % (i % 28 + 1), i % 256))
        self.sql("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(100), note TEXT, "
                 "born DATE NULL, blob_col BYTEA);"
                 "CREATE TABLE counters (k VARCHAR(20) PRIMARY KEY, v BIGINT);"
                 "INSERT INTO people VALUES " + ",".join(values) + ";"
                 "INSERT INTO counters VALUES ('a', 1), ('b', -9223372036854775808)", db)

    def contents(self, db):
        """Every table of ``db`` and its rows in a stable order, as text."""
        out = {}
        tables = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", db)
        for table in [t for t in tables.split("\n") if t]:
            out[table] = self.client("-c", 'COPY (SELECT * FROM "%s" ORDER BY 1) TO STDOUT' % table,
                                     db=db).stdout
        return out


@pytest.fixture(scope="session")
def postgres_server():
    yield from shared("postgres", lambda: Postgres().start().remember(), Postgres.forget)


@pytest.fixture
def postgres_fresh():
    yield from serve(Postgres())
