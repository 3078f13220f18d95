"""The mysql and postgresql modules against real servers: dump, decrypt with
the README's openssl command, decompress, restore with the client tools and
compare the tables; failures (server down, wrong password, a dump killed
part-way) leave nothing under a final name and mail once; no password or
key in any process's command line."""
import datetime
import os
import re
import shlex
import signal
import subprocess
import threading
import time

import pytest

from pypackrat import dumps
from pypackrat.core import names
from tests.conftest import PACKRAT, ROOT
from tests.databases import configure, engine, server  # noqa: F401
from tests.servers.mariadb import mariadb_fresh, mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_fresh, postgres_server  # noqa: F401

TODAY = datetime.date.today().strftime("%Y%m%d")
KEY = "k3y w1th 'quotes' \"and\" $pace\\s"
CIPHERS = [None, "aes-256-cbc", "blowfish"]


# -- helpers -------------------------------------------------------------------

def encryption(cipher):
    if cipher is None:
        return {}
    return {"ENCRYPTION_KEY": KEY, "DB_CIPHER": cipher}


def name(engine, db, suffix=".sql.bz2"):
    return "testhost-%s-%s-%s%s" % (engine, db, TODAY, suffix)


def readme_decrypt_command(cipher):
    """The README's `openssl enc -d ...` line for DB_CIPHER ``cipher``."""
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    section = text.split("<!-- section: databases -->", 1)[1].split("<!-- section:", 1)[0]
    flag = "-aes-256-cbc" if cipher == "aes-256-cbc" else "-bf"
    lines = [l.strip() for l in section.splitlines()
             if l.strip().startswith("openssl enc -d") and flag in l.split()]
    assert len(lines) == 1, lines
    return lines[0]


def decrypt_with_readme(path, cipher, tmp_path):
    """Run the README's command (placeholders KEYFILE, DUMP, OUT) with bash."""
    keyfile = tmp_path / "keyfile"
    keyfile.write_text(KEY + "\n")
    out = tmp_path / ("decrypted-" + os.path.basename(path))
    command = (readme_decrypt_command(cipher).replace("KEYFILE", shlex.quote(str(keyfile)))
               .replace("DUMP", shlex.quote(str(path))).replace("OUT", shlex.quote(str(out))))
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, capture_output=True)
    return out


def plain_sql(path, cipher, tmp_path):
    """The SQL text of a dump: decrypted (README command), decompressed."""
    if cipher:
        path = decrypt_with_readme(path, cipher, tmp_path)
    argv = dumps.decompress_argv(str(path))
    with open(path, "rb") as fh:
        return subprocess.run(argv, stdin=fh, check=True, capture_output=True).stdout


def assert_failed_cleanly(penv, proc, what):
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert what in proc.stderr, proc.stderr
    assert len(penv.mails()) == 1
    assert penv.mails()[0]["Subject"] == "Packrat: Error"
    assert what in penv.smtp.bodies()[0]
    assert os.listdir(penv.backup_dir) == []  # nothing under a final name, no temporary left


def start_packrat(penv, *args):
    penv.write()
    env = dict(os.environ, PACKRAT_DATE=TODAY)
    return subprocess.Popen([PACKRAT, "-c", str(penv.config_path)] + list(args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def children(pid):
    """(pid, argv0 basename) of the direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                argv0 = fh.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append((int(entry), os.path.basename(argv0)))
    return found


def wait_until(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class TableLock:
    """Hold a lock on table ``people`` of ``db`` from another session, so that
    a dump blocks part-way (it has started and connected) until release()."""

    def __init__(self, engine, server, db):
        self.engine, self.server, self.db = engine, server, db
        if engine == "mysql":
            self.proc = subprocess.Popen(server.root_argv("-n", "-N", db), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            self.proc.stdin.write("LOCK TABLES people WRITE; SELECT 'locked';\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "locked"
        else:
            self.proc = subprocess.Popen(server.psql_argv(db=db), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            self.proc.stdin.write("BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE;\n")
            self.proc.stdin.flush()
            wait_until(lambda: server.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
                                          "c.oid = l.relation WHERE c.relname = 'people' AND "
                                          "l.mode = 'AccessExclusiveLock' AND l.granted", db).strip() == "1",
                       "the table lock")

    def dump_is_waiting(self):
        if self.engine == "mysql":
            rows = self.server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                                   "USER = '%s' AND STATE LIKE 'Waiting for table%%'" % self.server.user)
        else:
            rows = self.server.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "wait_event_type = 'Lock' AND application_name = 'pg_dump'")
        return rows.strip() not in ("", "0")

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("UNLOCK TABLES;\n" if self.engine == "mysql" else "ROLLBACK;\n")
            self.proc.stdin.close()
            self.proc.wait(30)


@pytest.fixture
def fresh_server(engine, request):
    return request.getfixturevalue("mariadb_fresh" if engine == "mysql" else "postgres_fresh")


def source_db(server, rows=50):
    db = server.new_database("src")
    server.fill(db, rows)
    return db


# -- dump, decrypt, restore, compare ----------------------------------------------

@pytest.mark.parametrize("cipher", CIPHERS)
def test_one_database_restores_identical(penv, engine, server, cipher, tmp_path):
    db = source_db(server)
    configure(penv, engine, server, [db], **encryption(cipher))
    proc = penv.run("-v", date=TODAY, check=0)
    tag = "[MYSQL]" if engine == "mysql" else "[POSTGRESQL]"
    assert "%s backup up database: %s" % (tag, db) in proc.stdout
    assert os.listdir(penv.backup_dir) == [name(engine, db)]
    path = penv.backup_dir / name(engine, db)
    assert re.search(r"\| \S+ .*> %s\n" % re.escape(str(path)), proc.stdout), proc.stdout  # the file, as the original
    assert os.stat(path).st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    if cipher:
        assert raw.startswith(b"Salted__")  # the original's openssl format
    else:
        assert raw.startswith(b"BZh9")
    assert dumps.is_encrypted(path) == bool(cipher)
    sql = plain_sql(path, cipher, tmp_path)
    target = server.new_database("restored")
    server.restore(sql, target)
    assert server.contents(target) == server.contents(db)
    assert server.contents(db)["people"].count("\n") == 50


@pytest.mark.parametrize("cipher", CIPHERS)
def test_all_restores_identical_into_a_fresh_server(penv, engine, server, fresh_server, cipher, tmp_path):
    dbs = [source_db(server), source_db(server, rows=7)]
    configure(penv, engine, server, ["__ALL__"], **encryption(cipher))
    penv.run(date=TODAY, check=0)
    assert os.listdir(penv.backup_dir) == [name(engine, "all")]
    sql = plain_sql(penv.backup_dir / name(engine, "all"), cipher, tmp_path)
    if engine == "mysql":
        fresh_server.restore(sql)
    else:
        # pg_dumpall's CREATE ROLE of existing roles fails in any fresh cluster: go on
        fresh_server.restore(sql, stop_on_error=False)
    for db in dbs:
        assert db in fresh_server.databases()
        assert fresh_server.contents(db) == server.contents(db), db


def test_split_all_with_exclude(penv, engine, server, tmp_path):
    keep = source_db(server)
    skipped = server.new_database("skipme")
    excluded = server.new_database("excluded")
    configure(penv, engine, server, ["__ALL__"], DB_SPLIT_ALL=True,
              **{("MYSQL_EXCLUDE" if engine == "mysql" else "POSTGRESQL_EXCLUDE"):
                 ["skipme_*", excluded, "nomatch*"]})
    penv.run(date=TODAY, check=0)
    made = sorted(os.listdir(penv.backup_dir))
    assert name(engine, skipped) not in made and name(engine, excluded) not in made
    expected = {d for d in server.databases()
                if d not in ("information_schema", "performance_schema", "sys", excluded)
                and not d.startswith("skipme_")}
    if engine == "postgresql":
        expected.add("all.globals")
    assert made == sorted(name(engine, d) for d in expected)
    sql = plain_sql(penv.backup_dir / name(engine, keep), None, tmp_path)
    target = server.new_database("restored")
    server.restore(sql, target)
    assert server.contents(target) == server.contents(keep)
    if engine == "postgresql":
        globals_sql = plain_sql(penv.backup_dir / name(engine, "all.globals"), None, tmp_path)
        assert b"CREATE ROLE packrat;" in globals_sql
        assert b"CREATE TABLE" not in globals_sql


def test_exclude_without_split_leaves_the_database_out(penv, engine, server, tmp_path):
    keep = source_db(server)
    skipped = source_db(server)
    configure(penv, engine, server, ["__ALL__"],
              **{("MYSQL_EXCLUDE" if engine == "mysql" else "POSTGRESQL_EXCLUDE"): [skipped]})
    penv.run(date=TODAY, check=0)
    sql = plain_sql(penv.backup_dir / name(engine, "all"), None, tmp_path).decode("utf-8", "replace")
    if engine == "mysql":
        created = set(re.findall(r"CREATE DATABASE /\*!32312 IF NOT EXISTS\*/ `([^`]+)`", sql))
    else:
        created = set(re.findall(r'^CREATE DATABASE "?([^" ]+)"? ', sql, re.M))
    assert keep in created and skipped not in created


@pytest.mark.parametrize("compressor,suffix", [("zstd", ".sql.zst"), ("lbzip2", ".sql.bz2"),
                                               ("pbzip2", ".sql.bz2")])
def test_other_compressors(penv, engine, server, compressor, suffix, tmp_path):
    db = source_db(server)
    configure(penv, engine, server, [db], COMPRESSOR=compressor, **encryption("aes-256-cbc"))
    penv.run(date=TODAY, check=0)
    assert os.listdir(penv.backup_dir) == [name(engine, db, suffix)]
    sql = plain_sql(penv.backup_dir / name(engine, db, suffix), "aes-256-cbc", tmp_path)
    target = server.new_database("restored")
    server.restore(sql, target)
    assert server.contents(target) == server.contents(db)


def test_original_blowfish_command_reads_the_dump(penv, server, engine, tmp_path):
    """A restore script written for the original (`openssl enc -d -bf -pass
    pass:KEY`, OpenSSL's default digest) still reads a blowfish dump."""
    db = source_db(server)
    configure(penv, engine, server, [db], **encryption("blowfish"))
    penv.run(date=TODAY, check=0)
    proc = subprocess.run(["openssl", "enc", "-d", "-provider", "legacy", "-provider", "default",
                           "-bf", "-pass", "pass:" + KEY, "-in", str(penv.backup_dir / name(engine, db))],
                          capture_output=True, check=True)
    sql = subprocess.run(["bzip2", "-dc"], input=proc.stdout, capture_output=True, check=True).stdout
    assert db.encode() in sql or b"people" in sql


def test_without_password_no_secret_file_is_used(penv, engine, server, tmp_path):
    """Empty MYSQL_PASS / POSTGRESQL_PASS: the clients authenticate as before
    (here: root over TCP without password, postgres by trust)."""
    db = source_db(server)
    configure(penv, engine, server, [db])
    if engine == "mysql":
        penv.write(MYSQL_USER="root", MYSQL_PASS="")
    else:
        penv.write(POSTGRESQL_USER="postgres", POSTGRESQL_PASS="")
    proc = penv.run("-v", date=TODAY, check=0)
    assert "--defaults-file" not in proc.stdout
    sql = plain_sql(penv.backup_dir / name(engine, db), None, tmp_path)
    target = server.new_database("restored")
    server.restore(sql, target)
    assert server.contents(target) == server.contents(db)


def test_mysql_password_is_not_overridden_by_home_my_cnf(penv, mariadb_server, tmp_path):
    """A ~/.my.cnf with another password does not override MYSQL_PASS (it
    would with --defaults-extra-file: that file is read before ~/.my.cnf)."""
    db = source_db(mariadb_server)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".my.cnf").write_text("[client]\npassword=stale-password\n")
    configure(penv, "mysql", mariadb_server, [db])
    penv.run(date=TODAY, env={"HOME": str(home)}, check=0)
    assert os.listdir(penv.backup_dir) == [name("mysql", db)]


# -- failures ---------------------------------------------------------------------

def test_server_down_fails_cleanly(penv, engine, server):
    from tests.servers import free_port
    configure(penv, engine, server, ["somedb"], **encryption("aes-256-cbc"))
    penv.write(**{("MYSQL_PORT" if engine == "mysql" else "POSTGRESQL_PORT"): free_port()})
    proc = penv.run(date=TODAY)
    assert_failed_cleanly(penv, proc, "%s backup of somedb failed" % engine)


def test_wrong_password_fails_cleanly(penv, engine, server):
    db = source_db(server)
    configure(penv, engine, server, [db])
    penv.write(**{("MYSQL_PASS" if engine == "mysql" else "POSTGRESQL_PASS"): "wrong password"})
    proc = penv.run(date=TODAY)
    assert_failed_cleanly(penv, proc, "%s backup of %s failed" % (engine, db))
    assert "wrong password" not in proc.stderr + proc.stdout + penv.smtp.bodies()[0]


def test_wrong_password_with_all_and_split_fails_cleanly(penv, engine, server):
    configure(penv, engine, server, ["__ALL__"], DB_SPLIT_ALL=True)
    penv.write(**{("MYSQL_PASS" if engine == "mysql" else "POSTGRESQL_PASS"): "wrong password"})
    proc = penv.run(date=TODAY)
    assert_failed_cleanly(penv, proc, "cannot list the databases")


def test_missing_database_fails_and_the_others_are_still_made_and_uploaded(penv, engine, server, tmp_path):
    good = source_db(server)
    nas = tmp_path / "nas"
    nas.mkdir()
    configure(penv, engine, server, ["no_such_db", good], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    proc = penv.run(date=TODAY)
    assert proc.returncode == 1
    assert "%s backup of no_such_db failed" % engine in proc.stderr
    assert len(penv.mails()) == 1
    assert os.listdir(penv.backup_dir) == [name(engine, good)]
    assert os.listdir(nas) == [name(engine, good)]


def test_dump_killed_part_way_fails_cleanly(penv, engine, server):
    db = source_db(server)
    configure(penv, engine, server, [db], **encryption("aes-256-cbc"))
    lock = TableLock(engine, server, db)
    try:
        proc = start_packrat(penv)
        # the dump has connected and started, and waits for the table
        wait_until(lock.dump_is_waiting, "the dump to block on the table lock")
        dumper = wait_until(lambda: [p for p, n in children(proc.pid)
                                     if n in ("mysqldump", "mariadb-dump", "pg_dump")], "the dump process")
        assert len(dumper) == 1
        os.kill(dumper[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        lock.release()
    proc.stdout, proc.stderr = out, err
    assert_failed_cleanly(penv, proc, "killed by signal 9")


def test_no_secret_in_any_command_line(penv, engine, server):
    db = source_db(server)
    configure(penv, engine, server, [db], **encryption("aes-256-cbc"))
    secrets = [server.password.encode(), KEY.encode()]
    seen, leaks = set(), []
    stop = threading.Event()

    root = []  # packrat's pid, once started

    def sample():
        # every process of packrat's tree: packrat and all its descendants
        # (other sessions' processes on this machine are none of its business)
        while not stop.is_set():
            procs = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % entry) as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                    with open("/proc/%s/cmdline" % entry, "rb") as fh:
                        cmdline = fh.read()
                    with open("/proc/%s/environ" % entry, "rb") as fh:
                        environ = fh.read()
                except (OSError, ValueError, IndexError):
                    continue
                procs[int(entry)] = (ppid, cmdline, environ)
            if not root:
                continue
            tree = {root[0]}
            grew = True
            while grew:
                grew = False
                for pid, (ppid, _, _) in procs.items():
                    if ppid in tree and pid not in tree:
                        tree.add(pid)
                        grew = True
            for pid in tree & set(procs):
                _, cmdline, environ = procs[pid]
                seen.add(os.path.basename(cmdline.split(b"\0")[0]).decode(errors="replace"))
                for secret in secrets:
                    if secret in cmdline or secret in environ:
                        leaks.append((pid, cmdline))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lock = TableLock(engine, server, db)
    try:
        proc = start_packrat(penv, "-v")
        root.append(proc.pid)
        wait_until(lock.dump_is_waiting, "the dump to block on the table lock")
        time.sleep(0.5)  # several sampling rounds while every process of the pipeline runs
    finally:
        lock.release()
    out, err = proc.communicate(timeout=120)
    stop.set()
    sampler.join()
    assert proc.returncode == 0, err
    dump_program = {"mysql": {"mysqldump", "mariadb-dump"}, "postgresql": {"pg_dump"}}[engine]
    assert seen & dump_program, seen
    assert {"openssl", "bzip2"} <= seen, seen
    assert leaks == []
    for secret in secrets:
        assert secret.decode() not in out + err
    # the verbose command line is shown, without the secrets
    assert ("mysqldump --defaults-file=" in out) if engine == "mysql" else ("pg_dump -w" in out), out


def test_check_reports_empty_targets(penv, engine):
    penv.write(BACKUP_MODULES=[engine])
    proc = penv.run("check")
    assert proc.returncode == 1
    key = "MYSQL_TARGETS" if engine == "mysql" else "POSTGRESQL_TARGETS"
    assert "%s: %s is empty" % (penv.config_path, key) in proc.stderr


@pytest.mark.fast
def test_dump_names_round_trip():
    assert names.dump_name("h.example.org", "mysql", "__ALL__", "20250102") == \
        "h.example.org-mysql-all-20250102.sql.bz2"
    assert names.dump_name("h", "postgresql", "a/b", "20250102", dumps.suffix("zstd")) == \
        "h-postgresql-a%2Fb-20250102.sql.zst"
    assert names.parse_dump_name("my-host-postgresql-all.globals-20250102.sql.bz2") == \
        ("my-host", "postgresql", "all.globals", "20250102", ".sql.bz2")
    assert names.parse_dump_name("myhost-etc-20250102.1.dar") is None


def test_dry_run_shows_the_pipeline_and_makes_nothing(penv, engine, server):
    db = source_db(server)
    configure(penv, engine, server, [db], **encryption("blowfish"))
    proc = penv.run("-n", date=TODAY, check=0)
    program = "mysqldump" if engine == "mysql" else "pg_dump"
    lines = [l for l in proc.stdout.splitlines() if "would run: " + program in l]
    assert len(lines) == 1, proc.stdout
    assert "| bzip2 -c -9 | openssl enc -e -provider legacy -provider default -bf" in lines[0]
    assert lines[0].endswith("> %s" % (penv.backup_dir / name(engine, db)))
    assert server.password not in proc.stdout and KEY not in proc.stdout
    assert os.listdir(penv.backup_dir) == []
