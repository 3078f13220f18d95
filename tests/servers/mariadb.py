"""A real MariaDB server for the tests: ``mariadb-install-db`` into a
temporary data directory, ``mariadbd`` on 127.0.0.1 on a free port with its
own socket in that directory, stopped after.

The system tables are installed once per session into a template directory
and copied for every server, so a second, fresh server (to restore an
``__ALL__`` dump into) costs well under a second.

Fixtures::

    from tests.servers.mariadb import mariadb_server, mariadb_fresh  # noqa: F401

``mariadb_server`` (session) is shared: make your own database names with
``server.new_database()``. One server serves the session; each test module
gets it with what earlier modules made (databases, accounts) dropped.
``mariadb_fresh`` (function) is an empty server of
its own. Both have a user ``server.user`` with password ``server.password``
(with characters that need quoting) allowed everything from 127.0.0.1.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from tests.servers import free_port, serve, shared

USER = "packrat"
# quotes, backslash, '#', ':', '$' and a space: each needs care in an option file
PASSWORD = "s3cr#t p\"w'd\\x:$y"

_template_lock = threading.Lock()
_template = None


def _binary(*names):
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if path:
            return path
    raise RuntimeError("none of %s is installed" % ", ".join(names))


SERVER_OPTIONS = ["--no-defaults"]  # must come first
TUNING = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=64M",
          "--innodb-flush-log-at-trx-commit=0", "--skip-name-resolve",
          "--character-set-server=utf8mb4"]


def _install_template():
    """The system tables, installed once per session."""
    global _template
    with _template_lock:
        if _template and os.path.isdir(_template):
            return _template
        base = tempfile.mkdtemp(prefix="packrat-mariadb-template-")
        data = os.path.join(base, "data")
        proc = subprocess.run(
            [_binary("mariadb-install-db", "mysql_install_db"), "--no-defaults",
             "--datadir=" + data, "--user=root", "--auth-root-authentication-method=normal",
             "--skip-test-db"] + TUNING,
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: %s" % proc.stderr[-2000:])
        _template = data
        import atexit
        atexit.register(shutil.rmtree, base, True)
        return data


class MariaDB:
    def __init__(self):
        self.user = USER
        self.password = PASSWORD
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        self.proc = None
        self._counter = 0

    # -- life ---------------------------------------------------------------
    def start(self):
        template = _install_template()
        self.dir = tempfile.mkdtemp(prefix="packrat-mariadb-")
        self.data = os.path.join(self.dir, "data")
        shutil.copytree(template, self.data, symlinks=True)
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.port = free_port()
        self.log = os.path.join(self.dir, "error.log")
        self.proc = subprocess.Popen(
            [_binary("mariadbd", "mysqld")] + SERVER_OPTIONS +
            ["--datadir=" + self.data, "--user=root", "--port=%d" % self.port,
             "--bind-address=127.0.0.1", "--socket=" + self.socket,
             "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
             "--log-error=" + self.log] + TUNING,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited with %s: %s" % (self.proc.returncode, self._log_tail()))
            ok = subprocess.run(self.root_argv() + ["-e", "SELECT 1"], capture_output=True)
            if ok.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mariadbd did not answer: %s" % self._log_tail())
            time.sleep(0.1)
        for host in ("127.0.0.1", "localhost"):
            # through stdin: the password must not be on any command line
            self.client(input="CREATE USER '%s'@'%s' IDENTIFIED BY %s; GRANT ALL ON *.* TO '%s'@'%s' "
                        "WITH GRANT OPTION;\n" % (USER, host, self.quote(PASSWORD), USER, host))
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self):
        try:
            with open(self.log) as fh:
                return fh.read()[-2000:]
        except OSError:
            return ""

    # -- client --------------------------------------------------------------
    def root_argv(self, *args):
        """The client as root over the socket (no password)."""
        return [_binary("mariadb", "mysql"), "--no-defaults", "-S", self.socket, "-uroot"] + list(args)

    def client(self, *args, input=None, check=True):
        if isinstance(input, str):
            input = input.encode()
        proc = subprocess.run(self.root_argv(*args), input=input, capture_output=True)
        proc.stdout = proc.stdout.decode("utf-8", "surrogateescape")
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise RuntimeError("mariadb %s failed: %s" % (" ".join(args), proc.stderr))
        return proc

    def sql(self, query, db=None):
        """Run SQL as root; the output in batch form without column names."""
        args = ["-N", "-B", "-e", query] + ([db] if db else [])
        return self.client(*args).stdout

    def restore(self, path_or_bytes, db=None):
        """Feed a plain SQL dump (a file path or bytes) to the client."""
        data = path_or_bytes
        if not isinstance(data, bytes):
            with open(data, "rb") as fh:
                data = fh.read()
        return self.client(*([db] if db else []), input=data)

    @staticmethod
    def quote(text):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def new_database(self, prefix="db"):
        self._counter += 1
        name = "%s_%d_%d" % (prefix, os.getpid(), self._counter)
        self.sql("CREATE DATABASE `%s`" % name)
        return name

    def databases(self):
        return [d for d in self.sql("SHOW DATABASES").split("\n") if d]

    def _names(self, query):
        """The rows of ``query`` (columns of HEX()), decoded: names with any
        byte (a hostile one, a line break) come back as they are."""
        return [tuple(bytes.fromhex(c).decode("utf-8", "surrogateescape") for c in row.split("\t"))
                for row in self.sql(query).split("\n") if row]

    def _made(self):
        return (set(self._names("SELECT HEX(schema_name) FROM information_schema.schemata")),
                set(self._names("SELECT HEX(User), HEX(Host) FROM mysql.user")))

    def remember(self):
        """What the server holds when started (see forget())."""
        self._baseline = self._made()
        return self

    def forget(self):
        """Drop every database and account made since remember(): the
        server as a fresh one would be, for the next test module."""
        dbs, users = self._made()
        sql = ["SET SESSION lock_wait_timeout = 30;"]
        sql += ["DROP DATABASE `%s`;" % name.replace("`", "``") for (name,) in dbs - self._baseline[0]]
        sql += ["DROP USER %s@%s;" % (self.quote(u), self.quote(h)) for u, h in users - self._baseline[1]]
        if len(sql) == 1:
            return
        proc = self.client("--force", input="\n".join(sql) + "\n", check=False)
        if self._made()[0] != self._baseline[0]:
            raise RuntimeError("mariadb: cannot drop what earlier tests made: %s" % proc.stderr[-2000:])

    def fill(self, db, rows=50):
        """Two tables with awkward values: quotes, backslashes, NULL, UTF-8, binary."""
        self.sql("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(100), note TEXT, "
                 "born DATE NULL, blob_col VARBINARY(16)) DEFAULT CHARSET=utf8mb4;"
                 "CREATE TABLE counters (k VARCHAR(20) PRIMARY KEY, v BIGINT)", db)
        values = []
        for i in range(rows):
            values.append("(%d, %s, %s, %s, UNHEX('%02x00ff27'))" % (
                i, self.quote("name %d 'quoted' \\ \u00e9\u00df\u4e2d" % i),
                "NULL" if i % 7 == 0 else self.quote("line one\nline two\t%d" % i),
                "NULL" if i % 5 == 0 else "'2001-02-%02d'" % (i % 28 + 1), i % 256))
        self.sql("INSERT INTO people VALUES " + ",".join(values), db)
        self.sql("INSERT INTO counters VALUES ('a', 1), ('b', -9223372036854775808)", db)

    def contents(self, db):
        """Every table of ``db`` and its rows in a stable order, as text."""
        out = {}
        for table in [t for t in self.sql("SHOW TABLES", db).split("\n") if t]:
            out[table] = self.sql("SELECT * FROM `%s` ORDER BY 1" % table, db)
        return out


@pytest.fixture(scope="session")
def mariadb_server():
    yield from shared("mariadb", lambda: MariaDB().start().remember(), MariaDB.forget)


@pytest.fixture
def mariadb_fresh():
    yield from serve(MariaDB())
