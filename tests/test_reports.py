"""Reports (issue #14): MAIL_ON=failure, always, change; the success
report's real sizes; the headers every mail carries (Message-ID, Date, a
fully qualified From). Real packrat runs against the SMTP fixture."""
import email.utils
import os
import re
import stat

from tests.archives import day, touch


def setup(penv, tmp_path, **settings):
    src = tmp_path / "src"
    touch(src / "a.txt", os.urandom(30000))
    nas = tmp_path / "nas"
    nas.mkdir(exist_ok=True)
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas), **settings)
    return {"PACKRAT_STATE_DIR": str(tmp_path / "state")}


def check_headers(msg, sender_domain=None):
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", msg["Message-ID"]), msg["Message-ID"]
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    sender = email.utils.parseaddr(msg["From"])[1]
    local, _, domain = sender.partition("@")
    assert local and domain, msg["From"]
    if sender_domain:
        assert domain == sender_domain


def test_change_mails_the_failure_then_the_recovery(penv, tmp_path, smtp):
    env = setup(penv, tmp_path, MAIL_ON="change")
    penv.run(date=day(2), env=env, check=0)
    assert smtp.messages == []  # nothing known before: a success is not news
    state = tmp_path / "state" / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700

    penv.write(LOCAL_DIR=str(tmp_path / "missing"))
    penv.run(date=day(1), env=env, check=1)
    penv.run(date=day(1), env=env, check=1)  # still failing: mailed each time
    assert [m["Subject"] for m in smtp.messages] == ["Packrat: Error", "Packrat: Error"]

    penv.write(LOCAL_DIR=str(tmp_path / "nas"))
    penv.run(date=day(0), env=env, check=0)
    made = {p.name: p.stat().st_size for p in penv.backup_dir.iterdir() if day(0) in p.name}
    penv.run(date=day(0), env=env, check=0)  # the second success is not news (its archive may differ by a byte)
    subjects = [m["Subject"] for m in smtp.messages]
    assert subjects == ["Packrat: Error", "Packrat: Error", "Packrat: Recovered"]
    for msg in smtp.messages:
        check_headers(msg)
    assert len({m["Message-ID"] for m in smtp.messages}) == 3
    body = smtp.bodies()[-1]
    assert "previous run failed" in body
    assert made
    for name, size in made.items():  # the recovery's mail tells of the archives of its own run
        archive = name[: -len(".1.dar")]
        assert "%s " % archive in body and "(%d bytes)" % size in body


def test_always_reports_each_archive_and_upload(penv, tmp_path, smtp):
    env = setup(penv, tmp_path, MAIL_ON="always", MAIL_FROM="backups@example.org")
    penv.run(date=day(0), env=env, check=0)
    assert [m["Subject"] for m in smtp.messages] == ["Packrat: Success"]
    msg = smtp.messages[0]
    check_headers(msg, "example.org")
    assert msg["From"] == "backups@example.org"
    body = smtp.bodies()[0]
    (made,) = [p for p in penv.backup_dir.iterdir()]
    assert "filesystem (" in body
    assert "(%d bytes), " % made.stat().st_size in body
    assert re.search(r"upload local: .* in 1 file\(s\), [0-9.]+ s, .*/s", body), body
    assert not (tmp_path / "state").exists()  # only change keeps a state


def test_failure_is_the_default_and_the_sender_is_qualified(penv, tmp_path, smtp):
    import socket
    env = setup(penv, tmp_path)
    penv.run(date=day(0), env=env, check=0)
    assert smtp.messages == []
    penv.write(LOCAL_DIR=str(tmp_path / "missing"))
    penv.run(date=day(0), env=env, check=1)
    (msg,) = smtp.messages
    fqdn = socket.getfqdn()
    expected = fqdn if "." in fqdn and not fqdn.startswith("localhost") else "testhost"
    assert msg["From"] == "packrat@%s" % expected
    check_headers(msg, expected)


def test_a_planted_state_file_is_not_believed(penv, tmp_path, smtp):
    """A state file that is a link, or not of our format, counts as no
    state: no 'Recovered' mail, and it is replaced, its target untouched."""
    env = setup(penv, tmp_path, MAIL_ON="change")
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("last_status=failed\n")
    (state_dir / "state").symlink_to(victim)
    penv.run(date=day(0), env=env, check=0)
    assert smtp.messages == []
    assert victim.read_text() == "last_status=failed\n"
    assert (state_dir / "state").read_text() == "last_status=ok\n"
    assert not (state_dir / "state").is_symlink()


def test_dry_run_keeps_no_state(penv, tmp_path, smtp):
    env = setup(penv, tmp_path, MAIL_ON="change")
    penv.run("-n", date=day(0), env=env, check=0)
    assert not (tmp_path / "state").exists() and smtp.messages == []


def test_success_report_lists_each_dump_with_its_size(penv, tmp_path, smtp):
    """A Bash backup module's dumps: each listed with its real size and the
    time it took (the time from the previous file)."""
    (penv.module_path / "fake.sh").write_text(
        'mod_fake() {\n'
        '  f1="$BACKUP_DIR/testhost-mysql-shop-%s.sql.bz2"\n'
        '  head -c 1234 /dev/zero > "$f1"; sleep 1.1\n'
        '  f2="$BACKUP_DIR/testhost-mysql-blog-%s.sql.bz2"\n'
        '  head -c 4321 /dev/zero > "$f2"\n'
        '  NEW_BACKUPS="$NEW_BACKUPS $f1 $f2"\n}\n' % (day(0), day(0)))
    penv.write(BACKUP_MODULES=["fake"], MAIL_ON="always")
    penv.run(date=day(0), env={"PACKRAT_STATE_DIR": str(tmp_path / "state")}, check=0)
    (body,) = smtp.bodies()
    shop = re.search(r"testhost-mysql-shop-%s\.sql\.bz2 +1\.2 KiB \(1234 bytes\), ([0-9.]+) s" % day(0), body)
    blog = re.search(r"testhost-mysql-blog-%s\.sql\.bz2 +4\.2 KiB \(4321 bytes\), ([0-9.]+) s" % day(0), body)
    assert shop and blog, body
    assert float(blog.group(1)) >= 1.0  # made after the sleep: its time counts from the first dump
