"""The nightly run: purge, -U, the local upload module, dry run, failure
mail, and one run at a time."""
import os
import signal
import subprocess
import time

from tests.archives import day, touch
from tests.conftest import PACKRAT


def test_purge_keeps_young_undated_and_symlinked_files(penv, tmp_path):
    bd = penv.backup_dir
    young = touch(bd / ("testhost-etc-%s.1.dar" % day(5)))
    old11 = touch(bd / ("testhost-etc-%s.1.dar" % day(11)))
    old30 = touch(bd / "sub" / ("testhost-mysql-all-%s.sql.bz2" % day(30)))
    touch(bd / "sub" / ("testhost-mysql-all-%s.sql.bz2" % day(1)))  # the newest dump stays
    notes = touch(bd / "notes.txt")
    outside = touch(tmp_path / "outside" / ("precious-%s.tar" % day(40)))
    link = bd / ("link-%s.dar" % day(40))
    link.symlink_to(outside)
    outside_dir = tmp_path / "outside"
    (bd / "linkdir").symlink_to(outside_dir)
    fetched = touch(bd / ".packrat-tmp-restore-1" / ("testhost-etc-%s.1.dar" % day(40)))
    # only this host's archive names (FS_TARGETS), subdirectories only when asked
    penv.write(FS_TARGETS=["/etc"], PURGE_LOCAL_RECURSIVE="yes")
    penv.run("-P", "-p", "10", date=day(0), check=0)
    assert young.exists() and notes.exists() and link.is_symlink() and outside.exists()
    assert fetched.exists()  # a running restore's working directory
    assert not old11.exists() and not old30.exists()


def test_purge_age_is_whole_days_as_the_original(penv):
    bd = penv.backup_dir
    ten = touch(bd / ("testhost-a-%s.1.dar" % day(10)))
    eleven = touch(bd / ("testhost-a-%s.2.dar" % day(11)))
    penv.write(FS_TARGETS=["/a"])
    # late in the day: still 10 whole days for the first file
    penv.run("-P", "-p", "10", date=day(0) + "2359", check=0)
    assert ten.exists() and not eleven.exists()


def test_upload_date_sends_that_dates_files_to_local(penv, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()
    bd = penv.backup_dir
    wanted = [touch(bd / ("testhost-etc-%s.1.dar" % day(2)), os.urandom(5000)),
              touch(bd / ("testhost-mysql-db-%s.sql.bz2" % day(2)), os.urandom(300))]
    touch(bd / ("testhost-etc-%s.1.dar" % day(1)))
    touch(bd / (".packrat-tmp-1-testhost-etc-%s.1.dar" % day(2)))
    penv.write(LOCAL_DIR=str(nas))
    penv.run("-U", day(2), "-u", "local", date=day(0), check=0)
    assert sorted(os.listdir(nas)) == sorted(p.name for p in wanted)
    for p in wanted:
        assert (nas / p.name).read_bytes() == p.read_bytes()


def test_remote_purge_on_local_considers_only_this_hosts_names(penv, tmp_path):
    nas = tmp_path / "nas"
    mine_old = touch(nas / ("testhost-etc-%s.1.dar" % day(20)))
    mine_young = touch(nas / ("testhost-etc-%s.1.dar" % day(2)))
    other_old = touch(nas / ("otherhost-etc-%s.1.dar" % day(20)))
    undated = touch(nas / "testhost-README")
    touch(nas / ("otherhost-etc-%s.1.dar" % day(1)))  # the other host's newest stays
    penv.write(LOCAL_DIR=str(nas), UPLOAD_MODULES=["local"], FS_TARGETS=["/etc"])
    penv.run("-P", "-r", "10", date=day(0), check=0)
    assert not mine_old.exists()
    assert mine_young.exists() and other_old.exists() and undated.exists()
    touch(mine_old)
    penv.write(PURGE_REMOTE_ALL_HOSTS="yes")
    penv.run("-P", "-r", "10", date=day(0), check=0)
    assert not mine_old.exists() and not other_old.exists() and undated.exists()


def test_dry_run_changes_nothing(penv, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()
    bd = penv.backup_dir
    old = touch(bd / ("testhost-etc-%s.1.dar" % day(30)))
    remote_old = touch(nas / ("testhost-etc-%s.1.dar" % day(30)))
    remote_newer = touch(nas / ("testhost-etc-%s.1.dar" % day(1)))
    new = touch(bd / ("testhost-etc-%s.1.dar" % day(0)))
    penv.write(LOCAL_DIR=str(nas), UPLOAD_MODULES=["local"], FS_TARGETS=["/etc"])
    before = {p: p.stat().st_mtime for p in (old, remote_old, new)}
    proc = penv.run("-n", "-U", day(0), date=day(0), check=0)
    assert "would delete %s" % old in proc.stdout
    assert "would delete %s" % remote_old.name in proc.stdout
    assert "would upload %s" % new in proc.stdout
    assert {p: p.stat().st_mtime for p in before} == before
    assert sorted(os.listdir(nas)) == sorted([remote_old.name, remote_newer.name])


def test_failure_mails_once_without_secrets_and_exits_1(penv, smtp, tmp_path):
    secret = "Zq9-very-secret-key"
    missing = tmp_path / ("nas-" + secret)
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    penv.write(ENCRYPTION_KEY=secret, MYSQL_PASS="dbpass-" + secret,
               LOCAL_DIR=str(missing), UPLOAD_MODULES=["local"])
    proc = penv.run("-v", "-U", day(0), date=day(0))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert secret not in proc.stderr + proc.stdout
    assert "****" in proc.stderr
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    assert msg["Subject"] == "Packrat: Error"
    assert msg["To"] == "admin@example.org"
    body = smtp.bodies()[0]
    assert secret not in body
    assert "not a directory" in body
    assert "WARNING: The backup process was aborted. You may not have a stable backup for today." in body


def test_second_run_refuses_while_the_lock_is_held(penv):
    penv.write()
    holder = subprocess.Popen(["flock", "-x", str(penv.settings["LOCK_FILE"]), "sleep", "60"],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["flock", "-n", str(penv.settings["LOCK_FILE"]), "true"])
            if probe.returncode != 0:
                break
            time.sleep(0.05)
        proc = penv.run()
        assert proc.returncode == 75
        assert "holds the lock" in proc.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and its sleep, which shares the lock
        holder.wait()
    # the holder was killed: its lock is gone with it
    penv.run(check=0)


def test_two_packrat_runs_at_once(penv, tmp_path):
    """A real run holds the lock for its whole duration: a second refuses."""
    (penv.module_path / "slow.sh").write_text(
        "mod_slow() {\n  touch \"$BACKUP_DIR/started\"\n  sleep 3\n}\n")
    penv.write(BACKUP_MODULES=["slow"])
    cmd = [PACKRAT, "-c", str(penv.config_path)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (penv.backup_dir / "started").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True)
        assert second.returncode == 75, second.stderr
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err


def test_unexpected_error_is_one_line_not_a_traceback(penv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    penv.write(BACKUP_DIR=str(blocker / "sub"))
    proc = penv.run()
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_smtp_host_mail_goes_through_local_sendmail(penv, tmp_path):
    """As the original: the local sendmail gets the message (here a stand-in
    on PATH that keeps what it is given)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kept = tmp_path / "sent"
    fake = bindir / "sendmail"
    fake.write_text('#!/bin/sh\necho "$@" > "%s.args"\ncat > "%s"\n' % (kept, kept))
    fake.chmod(0o755)
    del penv.settings["SMTP_HOST"], penv.settings["SMTP_PORT"]
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    penv.write(LOCAL_DIR=str(tmp_path / "missing"), UPLOAD_MODULES=["local"], ENCRYPTION_KEY="k3y-sekrit")
    proc = penv.run("-U", day(0), date=day(0), env={"PATH": "%s:%s" % (bindir, os.environ["PATH"])})
    assert proc.returncode == 1
    import email
    sent = email.message_from_string(kept.read_text())
    assert sent["Subject"] == "Packrat: Error" and sent["To"] == "admin@example.org"
    body = sent.get_payload(decode=True).decode()
    assert "You may not have a stable backup for today." in body
    assert "k3y-sekrit" not in body and "k3y-sekrit" not in kept.read_text()
    assert (tmp_path / "sent.args").read_text().split() == ["-t", "-oi"]


def test_nightly_run_uploads_this_runs_new_files_to_local(penv, tmp_path):
    """Backup modules hand their new files to the upload modules: only those
    (not older files of BACKUP_DIR), byte for byte."""
    src = tmp_path / "src"
    touch(src / "a.txt", b"hello")
    nas = tmp_path / "nas"
    nas.mkdir()
    older = touch(penv.backup_dir / ("testhost-mysql-db-%s.sql.bz2" % day(1)))
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas))
    penv.run(date=day(0), check=0)
    made = sorted(p.name for p in penv.backup_dir.iterdir() if p != older)
    assert made and all(day(0) in name for name in made)
    assert sorted(os.listdir(nas)) == made
    for name in made:
        assert (nas / name).read_bytes() == (penv.backup_dir / name).read_bytes()


def test_sigterm_stops_the_module_mails_and_leaves_no_partial_file(penv, smtp):
    """cron's `timeout`, a shutdown: the module's processes stop with packrat,
    the failure is mailed once, nothing is left under a final name."""
    (penv.module_path / "slow.sh").write_text(
        'mod_slow() {\n  echo $$ > "$BACKUP_DIR/../slow.pid"\n'
        '  sleep 300 &\n  echo $! > "$BACKUP_DIR/../sleep.pid"\n  wait\n}\n')
    penv.write(BACKUP_MODULES=["slow"])
    first = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    sleep_pid = penv.tmp / "sleep.pid"
    deadline = time.monotonic() + 20
    while not (sleep_pid.exists() and sleep_pid.read_text().strip()):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 143, err
    assert "Traceback" not in err
    assert len(smtp.messages) == 1 and "stopped (SIGTERM)" in smtp.bodies()[0]
    pid = int(sleep_pid.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    state = open("/proc/%d/stat" % pid).read().split()[2] if os.path.exists("/proc/%d" % pid) else "gone"
    assert state in ("gone", "Z"), "the module's child outlived packrat"
    assert os.listdir(penv.backup_dir) == []
