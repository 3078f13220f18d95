"""The purge as an attacker (or a bad night) would try it: another tool's
dated files and photos beside the archives, hosts ``web`` and ``web-db``
sharing one remote, backups failing for longer than the purge age, a run
date far in the future; and a remote that is down reported once, not once
by the purge and again by the upload (issue 12)."""
import datetime
import os

import pytest

from tests.archives import HOST, WEEK, archive_prefix, day, make_week, touch, use
from tests.servers import free_port
from tests.servers.sshd import sshd_server, sshd  # noqa: F401
from tests.test_filesystem import restore

OLD = "20200101"


def foreign(top):
    """Dated files that are not packrat's: photos, another tool's dumps, a
    name that starts with the host name but no module of this host makes."""
    return [touch(top / "photos" / "IMG_20200101_1234.jpg"),
            touch(top / "IMG_20200101_1234.jpg"),
            touch(top / "db-20200101.sql"),
            touch(top / "othertool" / "db-20200101.sql"),
            touch(top / ("testhost-photo-%s.jpg" % OLD)),
            touch(top / ("testhost-etc-%s.tar" % OLD)),            # not a dar slice
            touch(top / ("testhosting-mysql-shop-%s.sql.bz2" % OLD)),  # another host
            touch(top / ("testhost-x-mysql-shop-%s.sql.bz2" % OLD))]   # host "testhost-x"


def own(top):
    """This host's archives: (old ones, the newest of each kind)."""
    old = [touch(top / ("testhost-etc-%s.master.1.dar" % OLD)),
           touch(top / ("testhost-etc-%s.1.dar" % day(12))),
           touch(top / ("testhost-mysql-shop-%s.sql.bz2" % day(30))),
           touch(top / ("testhost-example-srv-%s.tar.gz" % day(20)))]
    newest = [touch(top / ("testhost-etc-%s.master.1.dar" % day(3))),
              touch(top / ("testhost-mysql-shop-%s.sql.bz2" % day(1))),
              touch(top / ("testhost-example-srv-%s.tar.gz" % day(1)))]
    return old, newest


@pytest.mark.parametrize("recursive", ["no", "yes"])
def test_photos_and_another_tools_files_survive_local_and_remote(penv, tmp_path, recursive):
    nas = tmp_path / "nas"
    there = foreign(penv.backup_dir) + foreign(nas)
    old, newest = own(penv.backup_dir)
    old_r, newest_r = own(nas)
    sub_old = touch(penv.backup_dir / "sub" / ("testhost-etc-%s.1.dar" % day(40)))
    sub_new = touch(penv.backup_dir / "sub" / ("testhost-etc-%s.1.dar" % day(2)))
    penv.write(FS_TARGETS=["/etc"], BACKUP_MODULES=["example"], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas), PURGE_LOCAL_RECURSIVE=recursive)
    (penv.module_path / "example.sh").write_text("mod_example() { :; }\n")
    proc = penv.run("-P", date=day(0), check=0)
    assert all(p.exists() for p in there), proc.stdout + proc.stderr
    assert not any(p.exists() for p in old + old_r), proc.stdout + proc.stderr  # the purge ran
    assert all(p.exists() for p in newest + newest_r + [sub_new])
    assert sub_old.exists() == (recursive == "no")  # subdirectories only when asked


def test_patterns_widen_what_is_purged(penv):
    """PURGE_PATTERNS: names of a target no longer in FS_TARGETS (or of a
    module's own convention) are purged too; the newest still stays."""
    bd = penv.backup_dir
    gone = [touch(bd / ("testhost-srv-old-%s.master.1.dar" % day(d))) for d in (40, 30)]
    kept = touch(bd / ("testhost-srv-old-%s.master.1.dar" % day(20)))
    photo = touch(bd / "IMG_20200101_1234.jpg")
    penv.write(PURGE_PATTERNS=["testhost-srv-old-*.dar"])
    penv.run("-P", date=day(0), check=0)
    assert not any(p.exists() for p in gone) and kept.exists() and photo.exists()


def shared_listing(top):
    """What hosts ``web`` (target /etc) and ``web-db`` (target /etc) leave
    on one remote: the prefix rule would let ``web`` take ``web-db-...``."""
    names = {}
    for host in ("web", "web-db"):
        names[host] = {
            "old": [touch(top / ("%s-etc-%s.master.1.dar" % (host, day(40)))),
                    touch(top / ("%s-etc-%s.1.dar" % (host, day(35)))),
                    touch(top / ("%s-mysql-shop-%s.sql.bz2" % (host, day(30)))),
                    touch(top / ("%s-postgresql-all-%s.sql.zst" % (host, day(30))))],
            "young": [touch(top / ("%s-etc-%s.master.1.dar" % (host, day(2)))),
                      touch(top / ("%s-mysql-shop-%s.sql.bz2" % (host, day(1)))),
                      touch(top / ("%s-postgresql-all-%s.sql.zst" % (host, day(1))))],
        }
    return names


def _two_hosts(penv, top, settings):
    names = shared_listing(top)
    penv.write(HOSTNAME="web", FS_TARGETS=["/etc"], **settings)
    penv.run("-P", date=day(0), check=0)
    assert not any(p.exists() for p in names["web"]["old"])
    assert all(p.exists() for p in names["web"]["young"] + names["web-db"]["old"] + names["web-db"]["young"])
    penv.write(HOSTNAME="web-db")
    penv.run("-P", date=day(0), check=0)
    assert not any(p.exists() for p in names["web-db"]["old"])
    assert all(p.exists() for p in names["web"]["young"] + names["web-db"]["young"])


def test_web_and_web_db_on_a_shared_local_remote(penv, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()
    _two_hosts(penv, nas, dict(UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas)))


def test_web_and_web_db_on_a_shared_sftp_server(penv, sshd):
    from pathlib import Path
    _two_hosts(penv, Path(sshd.root), dict(UPLOAD_MODULES=["ssh"], **sshd.settings()))


def test_web_with_target_db_etc_is_told_apart_by_its_targets(penv, tmp_path):
    """The one name two hosts can both make (host web, target /db/etc; host
    web-db, target /etc): web purges it only where /db/etc is its target."""
    nas = tmp_path / "nas"
    both = [touch(nas / ("web-db-etc-%s.1.dar" % day(d))) for d in (30, 2)]
    penv.write(HOSTNAME="web", FS_TARGETS=["/etc"], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    penv.run("-P", date=day(0), check=0)
    assert all(p.exists() for p in both)
    penv.write(FS_TARGETS=["/db/etc"])
    penv.run("-P", date=day(0), check=0)
    assert not both[0].exists() and both[1].exists()


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    return make_week(tmp_path_factory, None)


def test_eleven_days_of_failures_keep_the_newest_chain_and_dumps(penv, tmp_path, week):
    """The week's real dar chain (master on WEEK[0], an incremental every
    day) and dumps, then 11 days without a backup: the purge with
    PURGE_*_ARCHIVES=10 keeps the newest chain, which restores the last
    day, and the newest dump of each database, locally and remotely."""
    src, snaps = use(penv, week)
    p = archive_prefix(HOST, src)
    dumps = {d: [touch(penv.backup_dir / ("testhost-%s-%s.sql.bz2" % (db, d)))
                 for db in ("mysql-shop", "mysql-all", "postgresql-app")]
             for d in WEEK[2:]}
    nas = tmp_path / "nas"
    nas.mkdir()
    for name in os.listdir(penv.backup_dir):
        (nas / name).write_bytes((penv.backup_dir / name).read_bytes())
    penv.settings.update(UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    last = WEEK[-1]
    after = (datetime.date(int(last[:4]), int(last[4:6]), int(last[6:])) + datetime.timedelta(days=11))
    proc = penv.run("-P", date=after.strftime("%Y%m%d"), check=0)
    for place in (penv.backup_dir, nas):
        left = sorted(os.listdir(place))
        dars = sorted(n for n in left if n.endswith(".dar"))
        # the whole newest chain: the master and every incremental on it
        assert {n.split(".")[0] for n in dars} == {"%s-%s" % (p, d) for d in WEEK}, proc.stdout
        assert all(n.startswith(("%s-%s.master." % (p, WEEK[0]),) + tuple("%s-%s." % (p, d) for d in WEEK[1:]))
                   for n in dars)
        assert sorted(n for n in left if n.endswith(".bz2")) == sorted(x.name for x in dumps[last])
    chain = ["%s-%s.master" % (p, WEEK[0]), "%s-%s" % (p, last)]
    assert restore(str(penv.backup_dir), chain, str(tmp_path / "r")) == snaps[last]  # it restores


def test_a_run_date_in_the_future_is_refused_and_deletes_nothing(penv, tmp_path):
    nas = tmp_path / "nas"
    old, newest = own(penv.backup_dir)
    old_r, newest_r = own(nas)
    penv.write(FS_TARGETS=["/etc"], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    before = sorted(os.listdir(penv.backup_dir)), sorted(os.listdir(nas))
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).strftime("%Y%m%d")
    for future in ("20621129", tomorrow, tomorrow + "0000"):
        proc = penv.run("-P", date=future)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "PACKRAT_DATE=%s" % future in lines[0] and "future" in lines[0]
        assert "Traceback" not in proc.stderr
        assert (sorted(os.listdir(penv.backup_dir)), sorted(os.listdir(nas))) == before
    penv.run("-P", date=datetime.date.today().strftime("%Y%m%d"), check=0)  # today is fine


# -- issue 12: one failure, one message ---------------------------------------------

def _refused_ftp(penv, **extra):
    port = free_port()  # nothing listens there: connection refused
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    penv.write(UPLOAD_MODULES=["ftp"], FTP_HOST="127.0.0.1", FTP_PORT=port, FTP_USER="u",
               FTP_PASS="pw-Xq7z", FTP_DIR="/", UPLOAD_RETRIES=1, **extra)
    return port


def test_a_remote_down_is_one_failure_not_two(penv, smtp):
    port = _refused_ftp(penv)
    proc = penv.run("-v", "-U", day(0), date=day(0))
    assert proc.returncode == 1
    assert "Running Python upload module ftp" in proc.stdout  # the upload was still tried
    failures = [l for l in proc.stderr.splitlines() if "connection failed" in l and "retrying" not in l]
    assert len(failures) == 1, proc.stderr
    assert "127.0.0.1" in failures[0] and str(port) in failures[0]
    assert "neither the purge nor the upload of ftp ran" in failures[0]
    assert len(smtp.messages) == 1
    body = smtp.bodies()[0]
    assert body.count("connection failed") == 1, body


def test_purge_only_reports_the_remote_once(penv, smtp):
    _refused_ftp(penv)
    proc = penv.run("-P", date=day(0))
    assert proc.returncode == 1
    failures = [l for l in proc.stderr.splitlines() if "connection failed" in l and "retrying" not in l]
    assert len(failures) == 1, proc.stderr
    assert len(smtp.messages) == 1


def test_remote_back_for_the_upload_reports_the_missed_purge_once(penv, smtp, tmp_path):
    """The purge finds the remote down, the upload finds it back: the files
    go up, and the one failure line says the purge did not run."""
    import threading
    import time
    port = free_port()
    nas = tmp_path / "nas"
    nas.mkdir()
    # a Bash backup module during which the remote (an FTP server) comes up:
    # the purge before it cannot connect, the upload after it can
    (penv.module_path / "wake.sh").write_text(
        'mod_wake() {\n  touch "$WAKE_FLAG"\n'
        '  while [ ! -e "$WAKE_FLAG.up" ]; do sleep 0.05; done\n'
        '  f="$BACKUP_DIR/$HOSTNAME-wake-$TODAY.txt"; echo hi > "$f"; NEW_BACKUPS="$NEW_BACKUPS $f"\n}\n')
    flag = tmp_path / "wake"
    penv.write(BACKUP_MODULES=["wake"], UPLOAD_MODULES=["ftp"], FTP_HOST="127.0.0.1", FTP_PORT=port,
               FTP_USER="u", FTP_PASS="pw-Xq7z", FTP_DIR="/", UPLOAD_RETRIES=0, WAKE_FLAG=str(flag))
    server = {}

    def start_when_asked():
        deadline = time.monotonic() + 60
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        server["s"] = _start_ftp(port, nas)
        (tmp_path / "wake.up").write_text("")

    thread = threading.Thread(target=start_when_asked, daemon=True)
    thread.start()
    try:
        proc = penv.run(date=day(0))
    finally:
        thread.join(timeout=60)
        if "s" in server:
            server["s"].close_all()
    assert proc.returncode == 1
    assert os.listdir(nas) == ["testhost-wake-%s.txt" % day(0)]  # the upload went through
    lines = [l for l in proc.stderr.splitlines() if "connection failed" in l and "retrying" not in l]
    assert len(lines) == 1, proc.stderr
    assert "no purge of ftp in this run; the upload went through" in lines[0]
    assert len(smtp.messages) == 1 and smtp.bodies()[0].count("connection failed") == 1


def _start_ftp(port, root):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer
    import threading
    auth = DummyAuthorizer()
    auth.add_user("u", "pw-Xq7z", str(root), perm="elradfmwMT")
    handler = type("H", (FTPHandler,), {"authorizer": auth})
    server = ThreadedFTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True).start()
    return server
