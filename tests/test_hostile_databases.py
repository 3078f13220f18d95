"""Database names are data, never options (issue 11), played as the
attacker: a tenant who may create databases on real MariaDB and PostgreSQL
servers names them ``-f/tmp/...``, ``--result-file=/tmp/...``,
``host=127.0.0.1 port=P user=postgres`` (a fake server of the tenant's
listens on P and asks for the password in clear text), ``a b``, and both
``shop/eu`` and ``shop-eu``. Packrat, as root, dumps every one of them as
itself into a file of its own; the target files stay untouched and the
fake server sees no connection. The password files are bound to the
configured server: a real psql given packrat's password file does not send
the password to another port."""
import datetime
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading

import pytest

from pypackrat import dumps, execute
from pypackrat.core import temp
from pypackrat.core.names import database_of, file_part, parse_dump_name
from pypackrat.backup import mysql, postgresql
from tests.databases import Settings, configure, engine  # noqa: F401
from tests.servers import serve
from tests.servers.mariadb import MariaDB, _binary
from tests.servers.postgres import Postgres

TODAY = datetime.date.today().strftime("%Y%m%d")
TENANT = "tenant"


# -- a fake PostgreSQL server that asks for the password ---------------------------

class FakePostgres:
    """Listens on 127.0.0.1, speaks just enough of the PostgreSQL protocol
    to ask a client for its password in clear text, and records every
    connection and every byte it receives."""

    SSL_REQUEST, GSS_REQUEST = 80877103, 80877104

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.close()

    def _recv(self, conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        self.received += data
        return data

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(10)
                try:
                    self._talk(conn)
                except OSError:
                    pass

    def _talk(self, conn):
        while True:
            length = struct.unpack("!I", self._recv(conn, 4))[0]
            body = self._recv(conn, length - 4)
            if struct.unpack("!I", body[:4])[0] in (self.SSL_REQUEST, self.GSS_REQUEST):
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        self._recv(conn, 1)
        length = struct.unpack("!I", self._recv(conn, 4))[0]
        self._recv(conn, length - 4)
        conn.sendall(b"E" + struct.pack("!I", 4 + 6) + b"SFATAL\0\0")


@pytest.fixture
def fake():
    server = FakePostgres()
    yield server
    server.close()


# -- servers with a tenant who may create databases ----------------------------------

@pytest.fixture(scope="module")
def mariadb_tenanted():
    server = MariaDB()
    for s in serve(server):
        server.client(input="CREATE USER '%s'@'localhost'; GRANT CREATE, INSERT, SELECT, DROP ON *.* "
                            "TO '%s'@'localhost';\n" % (TENANT, TENANT))
        yield s


@pytest.fixture(scope="module")
def postgres_tenanted():
    server = Postgres()
    for s in serve(server):
        server.sql("CREATE ROLE %s LOGIN CREATEDB" % TENANT)
        # named like packrat's user: the database pg_dump falls back to when
        # a hostile name leaves it with no database name
        tenant_psql(server, 'CREATE DATABASE "%s"' % server.user)
        yield s


def tenant_mysql(server, sql):
    argv = [_binary("mariadb", "mysql"), "--no-defaults", "-S", server.socket, "-u", TENANT]
    subprocess.run(argv, input=sql.encode(), check=True, capture_output=True)


def tenant_psql(server, sql, db="postgres"):
    argv = [shutil.which("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.socket_dir,
            "-p", str(server.port), "-U", TENANT, "-d", "dbname=" + pg_quote(db), "-c", sql]
    subprocess.run(argv, check=True, capture_output=True)


def pg_quote(name):
    return "'%s'" % name.replace("\\", "\\\\").replace("'", "\\'")


def create_as_tenant(engine, server, name, marker):
    """The tenant creates database ``name`` holding one table ``marker``."""
    if engine == "mysql":
        q = "`%s`" % name.replace("`", "``")
        tenant_mysql(server, "CREATE DATABASE %s; CREATE TABLE %s.%s (x INT); INSERT INTO %s.%s VALUES (1);"
                     % (q, q, marker, q, marker))
    else:
        tenant_psql(server, 'CREATE DATABASE "%s"' % name.replace('"', '""'))
        tenant_psql(server, "CREATE TABLE %s (x INT); INSERT INTO %s VALUES (1)" % (marker, marker), db=name)


def drop(engine, server, name):
    if engine == "mysql":
        server.sql("DROP DATABASE IF EXISTS `%s`" % name.replace("`", "``"))
    else:
        server.sql('DROP DATABASE IF EXISTS "%s"' % name.replace('"', '""'))


@pytest.fixture
def server(engine, request):
    return request.getfixturevalue("mariadb_tenanted" if engine == "mysql" else "postgres_tenanted")


def sql_of(path):
    with open(path, "rb") as fh:
        return subprocess.run(dumps.decompress_argv(str(path)), stdin=fh, check=True,
                              capture_output=True).stdout


@pytest.fixture
def bait():
    """A root-owned file a hostile name aims at, and a name that must not come to be."""
    directory = tempfile.mkdtemp(prefix="ph", dir="/tmp")  # short: PostgreSQL names are <= 63 bytes
    target = os.path.join(directory, "x")
    with open(target, "w") as fh:
        fh.write("precious\n")
    yield target, os.path.join(directory, "y")
    shutil.rmtree(directory)


def hostile_names(bait, fake):
    target, absent = bait
    return ["-f" + target, "--result-file=" + absent,
            "host=127.0.0.1 port=%d user=postgres" % fake.port,
            "a b", "shop/eu", "shop-eu", "it's \\ \"q\""]


# -- the attacks ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["split_all", "targets"])
def test_hostile_names_are_dumped_as_themselves(penv, engine, server, bait, fake, mode):
    names = hostile_names(bait, fake)
    markers = ["mk%dx" % i for i in range(len(names))]
    for name, marker in zip(names, markers):
        create_as_tenant(engine, server, name, marker)
    try:
        if mode == "split_all":
            configure(penv, engine, server, ["__ALL__"], DB_SPLIT_ALL=True)
        else:
            configure(penv, engine, server, names)
        proc = penv.run("-v", date=TODAY)
    finally:
        for name in names:
            drop(engine, server, name)
    # the attacks first: the target file, the file that must not be, the fake server
    target, absent = bait
    with open(target) as fh:
        assert fh.read() == "precious\n"
    assert os.listdir(os.path.dirname(target)) == ["x"]
    assert not os.path.exists(absent)
    assert fake.connections == 0 and fake.received == b""
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert penv.mails() == []
    made = os.listdir(penv.backup_dir)
    for name, marker in zip(names, markers):
        file = "testhost-%s-%s-%s.sql.bz2" % (engine, file_part(name), TODAY)
        assert file in made, (name, made)
        assert database_of(parse_dump_name(file)[2]) == name
        sql = sql_of(penv.backup_dir / file)
        others = [m for m in markers if m != marker and m.encode() in sql]
        assert marker.encode() in sql and others == [], (name, others)
    # the two names that once shared a file each have their own
    assert "testhost-%s-shop%%2Feu-%s.sql.bz2" % (engine, TODAY) in made
    assert "testhost-%s-shop-eu-%s.sql.bz2" % (engine, TODAY) in made
    assert not any(temp.is_temporary(n) for n in made)


def test_a_database_named_all_fails_loudly_and_the_others_are_dumped(penv, engine, server):
    create_as_tenant(engine, server, "all", "mk_all")
    create_as_tenant(engine, server, "fine", "mk_fine")
    try:
        configure(penv, engine, server, ["__ALL__"], DB_SPLIT_ALL=True)
        proc = penv.run(date=TODAY)
    finally:
        drop(engine, server, "all")
        drop(engine, server, "fine")
    assert proc.returncode == 1
    assert "a database is named 'all'" in proc.stderr
    assert len(penv.mails()) == 1 and "a database is named 'all'" in penv.smtp.bodies()[0]
    made = os.listdir(penv.backup_dir)
    assert "testhost-%s-fine-%s.sql.bz2" % (engine, TODAY) in made
    assert "testhost-%s-all-%s.sql.bz2" % (engine, TODAY) not in made


# -- the password goes to the configured server only ----------------------------------

def test_pgpass_is_bound_to_the_configured_host_and_port(postgres_tenanted, fake):
    server = postgres_tenanted
    settings = Settings(POSTGRESQL_PASS=server.password, POSTGRESQL_USER=server.user,
                        POSTGRESQL_HOST="127.0.0.1", POSTGRESQL_PORT=server.port)
    with postgresql.connection(settings) as (env, conn):
        assert env["PGPASSFILE"].startswith("/dev/fd/")  # in memory, nothing on disk
        ok = execute.run(["psql", "-X"] + conn + ["-d", "postgres", "-A", "-t", "-c", "SELECT 42"],
                         env=env, changes=False)
        assert ok.out.strip() == "42"
        # the same password file, the same user, another port: the fake server
        # asks for the password and gets none
        other = ["-w", "-U", server.user, "-h", "127.0.0.1", "-p", str(fake.port)]
        with pytest.raises(execute.CommandFailed) as failed:
            execute.run(["psql", "-X"] + other + ["-d", "postgres", "-c", "SELECT 1"], env=env, changes=False)
        assert "no password supplied" in str(failed.value)
    assert fake.connections == 1
    assert server.password.encode() not in fake.received
    # the fake server would have seen it from a password file valid everywhere
    anywhere = "*:*:*:*:%s\n" % server.password.replace("\\", "\\\\").replace(":", "\\:")
    with execute.secret_path(anywhere) as path:
        with pytest.raises(execute.CommandFailed):
            execute.run(["psql", "-X"] + other + ["-d", "postgres", "-c", "SELECT 1"],
                        env={"PGPASSFILE": path}, changes=False)
    assert server.password.encode() in fake.received


@pytest.mark.fast
def test_pgpass_lines_follow_libpq_rules(monkeypatch):
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    lines = postgresql.pgpass_lines
    assert lines("p:w\\", "db.example.org", 5433, "bob") == "db.example.org:5433:*:bob:p\\:w\\\\\n"
    assert lines("pw") == "localhost:5432:*:*:pw\n"
    assert lines("pw", "/var/run/postgresql") == \
        "/var/run/postgresql:5432:*:*:pw\nlocalhost:5432:*:*:pw\n"
    assert lines("pw", "/srv/pg") == "/srv/pg:5432:*:*:pw\n"
    assert lines("pw", "a,b", "1,2") == "a:1:*:*:pw\nb:2:*:*:pw\n"
    monkeypatch.setenv("PGPORT", "6543")
    assert lines("pw", "h") == "h:6543:*:*:pw\n"


def test_mysql_option_file_binds_the_server_and_stays_in_memory(mariadb_tenanted):
    server = mariadb_tenanted
    settings = Settings(MYSQL_PASS=server.password, MYSQL_USER=server.user,
                        MYSQL_HOST="127.0.0.1", MYSQL_PORT=server.port)
    with mysql.connection(settings) as conn:
        assert len(conn) == 1 and conn[0].startswith("--defaults-file=/dev/fd/")
        text = open(conn[0].split("=", 1)[1]).read()
        assert "host=\"127.0.0.1\"" in text and "port=%d" % server.port in text
        assert os.stat(conn[0].split("=", 1)[1]).st_mode & 0o777 == 0o600
        # the real client, given nothing but the option file, reaches the configured server
        out = execute.run([dumps.program("mysql", "mariadb")] + conn +
                          ["-N", "-B", "-e", "SELECT CURRENT_USER()"], changes=False).out
        assert out.strip() == "%s@127.0.0.1" % server.user


@pytest.mark.fast
def test_names_encode_one_to_one():
    names = ["shop/eu", "shop-eu", "shop%2Feu", "a\nb", "a%0Ab", "100%", "%", "%%41", "x\x7fy",
             "-f/tmp/x", "é/ß", "all.globals2", "plain_name"]
    parts = [file_part(n) for n in names]
    assert len(set(parts)) == len(names)
    for name, part in zip(names, parts):
        assert "/" not in part and "\n" not in part and "\x7f" not in part
        assert database_of(part) == name
    # every name that was safe before keeps its file name
    for name in ["plain_name", "shop-eu", "a b", "100%", "it's", "all.globals2", "Ünïcödé"]:
        assert file_part(name) == name


def test_restore_finds_each_of_two_colliding_names(penv, engine, server):
    """`packrat restore ENGINE shop/eu` and `... shop-eu` each restore their own dump."""
    pairs = [("shop/eu", "mk_slash", "r_slash"), ("shop-eu", "mk_dash", "r_dash")]
    for name, marker, _ in pairs:
        create_as_tenant(engine, server, name, marker)
    try:
        configure(penv, engine, server, [name for name, _, _ in pairs])
        penv.run(date=TODAY, check=0)
        for name, marker, into in pairs:
            penv.run("restore", engine, name, "--into", into, date=TODAY, check=0)
            if engine == "mysql":
                tables = server.sql("SHOW TABLES", into).split()
            else:
                tables = server.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", into).split()
            assert tables == [marker], (name, tables)
    finally:
        for name, _, into in pairs:
            drop(engine, server, name)
            drop(engine, server, into)
