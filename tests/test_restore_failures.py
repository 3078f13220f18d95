"""Database restores that fail, on the real servers: a wrong key or cipher
is named as such, and a failed restore leaves no database it created
behind (one that existed before is never dropped). MySQL restores with
credentials of their own (a least-privilege backup user cannot CREATE
DATABASE), and a whole-server MySQL restore makes its grants count."""
import os
import subprocess

import pytest

from tests.archives import HOST, KEY
from tests.databases import db_settings, server_for
from tests.servers.mariadb import mariadb_fresh, mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401

DAY = "20240107"


def dump_path(penv, engine, db, suffix=".sql.bz2"):
    return penv.backup_dir / ("%s-%s-%s-%s%s" % (HOST, engine, db, DAY, suffix))


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_wrong_key_or_cipher_is_named_and_nothing_is_left(penv, engine, request):
    server = server_for(request, engine)
    db = server.new_database("wk")
    server.fill(db, rows=5)
    db_settings(penv, engine, server, [db], ENCRYPTION_KEY=KEY)
    penv.run(date=DAY, check=0)
    before = sorted(server.databases())
    # a wrong key
    penv.settings["ENCRYPTION_KEY"] = "a key that is not it"
    proc = penv.run("restore", engine, db, "--into", db + "_x", check=1)
    assert "wrong ENCRYPTION_KEY or cipher?" in proc.stderr
    assert "--cipher or DB_CIPHER" in proc.stderr
    assert "Traceback" not in proc.stderr and KEY not in proc.stderr
    assert sorted(server.databases()) == before
    # the right key, the wrong cipher
    penv.settings["ENCRYPTION_KEY"] = KEY
    proc = penv.run("restore", "--cipher", "blowfish", engine, db, "--into", db + "_x", check=1)
    assert "wrong ENCRYPTION_KEY or cipher? (the cipher is blowfish" in proc.stderr
    assert sorted(server.databases()) == before
    # --force over the original with a wrong key: found out before the drop
    want = server.contents(db)
    penv.settings["ENCRYPTION_KEY"] = "wrong again"
    penv.run("restore", engine, db, "--force", check=1)
    assert server.contents(db) == want
    # the right key: the next try needs no --force
    penv.settings["ENCRYPTION_KEY"] = KEY
    penv.run("restore", engine, db, "--into", db + "_x", check=0)
    assert server.contents(db + "_x") == want


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_a_failed_restore_drops_the_database_it_created(penv, engine, request):
    """A dump cut short (a damaged copy): part of it loads, then the
    restore fails. The database created for it is dropped again, so the
    next try needs no --force; one that existed before stays."""
    server = server_for(request, engine)
    db = server.new_database("cut")
    server.fill(db, rows=300)
    db_settings(penv, engine, server, [db], COMPRESSOR="zstd")
    penv.run(date=DAY, check=0)
    path = dump_path(penv, engine, db, ".sql.zst")
    good = path.read_bytes()
    sql = subprocess.run(["zstd", "-q", "-d", "-c"], input=good, capture_output=True,
                         check=True).stdout
    # the first half of the SQL, a valid zstd file: tables created, then an error
    path.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=sql[: len(sql) // 2],
                                    capture_output=True, check=True).stdout)
    before = sorted(server.databases())
    proc = penv.run("restore", engine, db, "--into", db + "_x", check=1)
    assert "restore into database %s_x" % db in proc.stderr
    assert "database %s_x, created for this restore, was dropped again" % db in proc.stderr
    assert sorted(server.databases()) == before
    # an existing database is never dropped by the failure
    server.sql(("CREATE DATABASE `%s_y`" if engine == "mysql" else 'CREATE DATABASE "%s_y"') % db)
    proc = penv.run("restore", engine, db, "--into", db + "_y", check=1)
    assert "exists" in proc.stderr and "--force" in proc.stderr
    assert db + "_y" in server.databases()
    # the good dump: restored without --force
    path.write_bytes(good)
    penv.run("restore", engine, db, "--into", db + "_x", check=0)
    assert server.contents(db + "_x") == server.contents(db)


def test_mysql_restore_with_its_own_credentials(penv, mariadb_server):
    """The backup user may only read (SELECT, LOCK TABLES, SHOW VIEW): it
    dumps, but cannot create the database to restore into. MYSQL_RESTORE_USER
    and MYSQL_RESTORE_PASS (a secret, masked) can."""
    server = mariadb_server
    db = server.new_database("lp")
    server.fill(db, rows=10)
    reader, reader_pass = "reader_%d" % os.getpid(), "r3ad only'\"\\ pw"
    admin, admin_pass = "restorer_%d" % os.getpid(), "r3store #pw$x"
    for host in ("127.0.0.1", "localhost"):
        server.client(input="CREATE USER '%s'@'%s' IDENTIFIED BY %s; GRANT SELECT, LOCK TABLES, "
                      "SHOW VIEW ON *.* TO '%s'@'%s'; CREATE USER '%s'@'%s' IDENTIFIED BY %s; "
                      "GRANT ALL ON *.* TO '%s'@'%s';\n"
                      % (reader, host, server.quote(reader_pass), reader, host,
                         admin, host, server.quote(admin_pass), admin, host))
    db_settings(penv, "mysql", server, [db], MYSQL_USER=reader, MYSQL_PASS=reader_pass)
    penv.run(date=DAY, check=0)
    assert dump_path(penv, "mysql", db).exists()
    before = sorted(server.databases())
    proc = penv.run("restore", "mysql", db, "--into", db + "_x", check=1)
    assert "Access denied" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(server.databases()) == before
    penv.settings.update(MYSQL_RESTORE_USER=admin, MYSQL_RESTORE_PASS=admin_pass)
    proc = penv.run("-v", "restore", "mysql", db, "--into", db + "_x", check=0)
    assert server.contents(db + "_x") == server.contents(db)
    output = proc.stdout + proc.stderr
    assert admin_pass not in output and reader_pass not in output
    assert "--binary-mode" in output
    # check accepts the settings; the password is masked there too
    proc = penv.run("check")
    assert admin_pass not in proc.stdout + proc.stderr


def test_mysql_all_restore_makes_its_grants_count(penv, mariadb_fresh):
    """A whole-server dump writes the grant tables: a user dropped since
    the backup logs in again right after the restore (FLUSH PRIVILEGES),
    with no server restart."""
    server = mariadb_fresh
    user, password = "app_user", "app pw 'x'"
    server.client(input="CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY %s;\n"
                  % (user, server.quote(password)))
    db_settings(penv, "mysql", server, ["__ALL__"])
    penv.run(date=DAY, check=0)
    server.sql("DROP USER '%s'@'127.0.0.1'" % user)

    def login():
        env = dict(os.environ, MYSQL_PWD=password)
        return subprocess.run(["mysql", "--no-defaults", "-h", "127.0.0.1", "-P", str(server.port),
                               "-u", user, "-N", "-B", "-e", "SELECT 42"], env=env,
                              capture_output=True, text=True)

    assert login().returncode != 0
    penv.run("restore", "mysql", "all", check=0)
    proc = login()
    assert proc.returncode == 0 and proc.stdout.strip() == "42", proc.stderr
