"""Overlapped uploads (issue 15): each archive or dump goes to every upload
module as soon as it has its final name, while the backup modules go on.
The order is read from the run's recorded events (ctx.record.events, in the
order they happened), never from wall-clock thresholds."""
import os
import signal
import subprocess
import time

import pytest

from pypackrat import config, run
from pypackrat.context import Context, Options
from tests.conftest import PACKRAT
from tests.databases import db_settings, engine, server  # noqa: F401
from tests.servers.mariadb import mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401
from tests.servers.sshd import sshd, sshd_server  # noqa: F401

TODAY = "20261126"


def source(tmp_path, name, size):
    src = tmp_path / name
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(size))
    return str(src)


def bash_module(penv, name, body):
    (penv.module_path / ("%s.sh" % name)).write_text("mod_%s() {\n%s\n}\n" % (name, body))


# a Bash backup module that makes one file, once the first archive has reached
# each remote of WAIT_FOR under its final name: only uploads that overlap the
# backups let it succeed (with the uploads after the backups it waits 30 s, fails)
WAIT_THEN_MAKE = """  for i in $(seq 300); do
    ready=1; for f in "${WAIT_FOR[@]}"; do [ -e "$f" ] || ready=; done
    [ -n "$ready" ] && break; sleep 0.1
  done
  [ -n "$ready" ] || die "no upload while the backups ran"
  head -c 70000 /dev/urandom > "$BACKUP_DIR/$HOSTNAME-late-$TODAY.bin"
  NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$HOSTNAME-late-$TODAY.bin\""""


def nightly(penv, monkeypatch, **settings):
    """One nightly run in this process: (ctx, failure messages)."""
    monkeypatch.setenv("PACKRAT_DATE", TODAY)
    penv.write(**settings)
    ctx = Context(config.load(str(penv.config_path)), Options())
    return ctx, run.nightly(ctx)


def events(ctx, what, module=None):
    return [(i, e[3]) for i, e in enumerate(ctx.record.events)
            if e[1] == what and (module is None or e[2] == module)]


def made_files(ctx):
    return [path for _, path in events(ctx, "made")]


def sent(ctx, module):
    return [path for _, path in events(ctx, "upload ended", module)]


def first_slice(src):
    return "testhost%s-%s.master.1.dar" % (src.replace("/", "-"), TODAY)


def test_uploads_start_while_the_backups_run_each_file_once_to_each_module(penv, tmp_path, sshd,
                                                                         monkeypatch):
    nas = tmp_path / "nas"
    nas.mkdir()
    one, two = source(tmp_path, "one", 250000), source(tmp_path, "two", 1000)
    bash_module(penv, "late", WAIT_THEN_MAKE)
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem", "late"],
                          FS_TARGETS=[one, two], FS_SLICE_SIZE="100k", FS_COMPRESSION="none",
                          UPLOAD_MODULES=["local", "ssh"], LOCAL_DIR=str(nas),
                          WAIT_FOR=[str(nas / first_slice(one)), os.path.join(sshd.root, first_slice(one))],
                          **sshd.settings(SSH_CLIENT="paramiko"))
    assert errors == []
    made = made_files(ctx)
    assert len(made) >= 5 and made[-1].endswith("-late-%s.bin" % TODAY)  # 3 slices, 1, late
    assert made == ctx.new_backups
    # the first archive went offsite before the last backup module ended
    (backup_end, _), = events(ctx, "backup ended", "late")
    for module in ("local", "ssh"):
        first_upload = [i for i, path in events(ctx, "upload ended", module) if path == made[0]][0]
        assert first_upload < backup_end, module
    # every file exactly once to every module, in the order made, over one connection each
    for module, where in (("local", str(nas)), ("ssh", sshd.root)):
        assert sent(ctx, module) == made, module
        assert sorted(os.listdir(where)) == sorted(os.path.basename(p) for p in made), module
        for path in made:
            with open(path, "rb") as mine, open(os.path.join(where, os.path.basename(path)), "rb") as theirs:
                assert mine.read() == theirs.read(), (module, path)
    assert sshd.connections() == 1  # the purge's, kept for the uploads
    # the record: one upload step per module, in UPLOAD_MODULES order, after the backups
    assert [(s.kind, s.module) for s in ctx.record.steps] == [
        ("backup", "filesystem"), ("backup", "late"), ("upload", "local"), ("upload", "ssh")]
    assert all(s.ok and s.files == made for s in ctx.record.of("upload"))


def test_a_backup_failure_mid_night_still_uploads_what_was_made_before_and_after(penv, tmp_path,
                                                                                monkeypatch):
    nas = tmp_path / "nas"
    nas.mkdir()
    one = source(tmp_path, "one", 5000)
    bash_module(penv, "broken", '  die "backup module broken: the disk is on fire"')
    bash_module(penv, "late", WAIT_THEN_MAKE)
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem", "broken", "late"],
                          FS_TARGETS=[one], FS_COMPRESSION="none", UPLOAD_MODULES=["local"],
                          LOCAL_DIR=str(nas), WAIT_FOR=[str(nas / first_slice(one))])
    assert errors == ["backup module broken: the disk is on fire"]
    made = made_files(ctx)
    assert [os.path.basename(p) for p in made] == [first_slice(one), "testhost-late-%s.bin" % TODAY]
    assert sent(ctx, "local") == made
    assert sorted(os.listdir(nas)) == sorted(os.path.basename(p) for p in made)


def test_each_dump_is_handed_over_as_it_is_made_a_failed_one_between(penv, tmp_path, engine, server,
                                                                      monkeypatch):
    """The database modules hand over each dump at once (ctx.made), during
    the module; a database that fails between two others stops neither."""
    nas = tmp_path / "nas"
    nas.mkdir()
    first, last = server.new_database("first"), server.new_database("last")
    server.fill(first, 20)
    server.fill(last, 20)
    db_settings(penv, engine, server, [first, "no_such_database", last])
    ctx, errors = nightly(penv, monkeypatch, UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    assert len(errors) == 1 and "no_such_database" in errors[0], errors
    made = made_files(ctx)
    assert [os.path.basename(p) for p in made] == [
        "testhost-%s-%s-%s.sql.bz2" % (engine, db, TODAY) for db in (first, last)]
    (end, _), = events(ctx, "backup ended", engine)
    assert all(i < end for i, _ in events(ctx, "made"))  # handed over during the module
    assert sent(ctx, "local") == made
    assert sorted(os.listdir(nas)) == sorted(os.path.basename(p) for p in made)


def test_a_failing_upload_stops_no_backup_nor_the_other_module(penv, tmp_path, monkeypatch):
    """The local module's share vanishes: its failure is reported once, in the
    words of before; the Bash upload module still gets every file."""
    nas, shelf = tmp_path / "nas", tmp_path / "shelf"
    nas.mkdir()
    shelf.mkdir()
    one = source(tmp_path, "one", 5000)
    bash_module(penv, "late", '  rmdir "$LOCAL_DIR"\n  echo x > "$BACKUP_DIR/$HOSTNAME-late-$TODAY.txt"\n'
                '  NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$HOSTNAME-late-$TODAY.txt"')
    (penv.module_path / "shelf.sh").write_text(
        'mod_shelf() {\n  for f in $NEW_BACKUPS; do cp "$f" "$SHELF_DIR/"; done\n}\n')
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["late", "filesystem"], FS_TARGETS=[one],
                          FS_COMPRESSION="none", UPLOAD_MODULES=["local", "shelf"], LOCAL_DIR=str(nas),
                          SHELF_DIR=str(shelf), UPLOAD_RETRIES=0)
    assert len(errors) == 1 and "not a directory" in errors[0], errors
    made = made_files(ctx)
    assert len(made) == 2
    assert sorted(os.listdir(shelf)) == sorted(os.path.basename(p) for p in made)
    assert [s.module for s in ctx.record.of("backup") if s.ok] == ["late", "filesystem"]


def test_upload_concurrency_0_keeps_the_original_order(penv, tmp_path, monkeypatch):
    nas = tmp_path / "nas"
    nas.mkdir()
    one = source(tmp_path, "one", 5000)
    bash_module(penv, "other", '  echo x > "$BACKUP_DIR/$HOSTNAME-other-$TODAY.txt"\n'
                '  NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$HOSTNAME-other-$TODAY.txt"')
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem", "other"], FS_TARGETS=[one],
                          FS_COMPRESSION="none", UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas),
                          UPLOAD_CONCURRENCY=0)
    assert errors == []
    (backup_end, _), = events(ctx, "backup ended", "other")
    assert min(i for i, _ in events(ctx, "upload started")) > backup_end
    assert len(os.listdir(nas)) == 2


def test_dry_run_shows_which_files_go_where(penv, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()
    one = source(tmp_path, "one", 10)
    (penv.module_path / "shelf.sh").write_text('mod_shelf() {\n  :\n}\n')
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[one], UPLOAD_MODULES=["local", "shelf"],
               LOCAL_DIR=str(nas))
    proc = penv.run("-n", date=TODAY, check=0)
    archive = os.path.join(str(penv.backup_dir), first_slice(one).replace(".1.dar", ".*.dar"))
    assert "[dry run] uploads: local sends each file as soon as it is made, while the backups go on " \
           "(at most 2 modules at once)" in proc.stdout
    assert "[dry run] uploads: local sends each archive while dar writes it" in proc.stdout
    assert "[dry run] uploads: shelf gets every new file after the backups" in proc.stdout
    assert "[dry run] would upload %s to local:%s" % (archive, nas) in proc.stdout
    assert "[dry run] would upload %s with mod_shelf" % archive in proc.stdout
    assert os.listdir(nas) == [] and os.listdir(penv.backup_dir) == []


# openssh: scp moves the bytes, a program of the worker's, stopped with it; so
# slow (50 KB/s) that a run that waited for it would outlast its 60 s for the workers
@pytest.mark.parametrize("client, bwlimit", [("paramiko", 8000), ("openssh", 400)])
def test_sigterm_during_overlapped_uploads_removes_every_temporary_file_and_mails_once(
        penv, smtp, tmp_path, sshd, client, bwlimit):
    nas = tmp_path / "nas"
    nas.mkdir()
    one = source(tmp_path, "one", 4 << 20)
    bash_module(penv, "slow", '  sleep 300 &\n  wait')
    # the ssh upload crawls, the local one is done at once
    penv.write(BACKUP_MODULES=["filesystem", "slow"], FS_TARGETS=[one], FS_COMPRESSION="none",
               UPLOAD_MODULES=["local", "ssh"], LOCAL_DIR=str(nas),
               **sshd.settings(SSH_CLIENT=client, SSH_BWLIMIT=bwlimit))
    partial = os.path.join(sshd.root, first_slice(one) + ".partial")
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PACKRAT_DATE=TODAY))
    made = penv.backup_dir / first_slice(one)  # the SIGTERM comes once dar is done, mid-upload
    out, err = sigterm_when(proc, lambda: made.exists() and os.path.exists(partial) and os.path.getsize(partial) > 0)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _names(int(p), partial)]
    assert len(smtp.messages) == 1 and "stopped (SIGTERM)" in smtp.bodies()[0]
    # nothing temporary left, locally or remotely; the ssh upload never got its final name
    assert [n for n in os.listdir(sshd.root)] == []
    assert [n for n in os.listdir(nas) if n.endswith(".partial")] == []
    assert [n for n in os.listdir(penv.backup_dir) if n.startswith(".packrat-tmp")] == []
    assert sorted(os.listdir(penv.backup_dir)) == [first_slice(one)]
    sshd.wait_sessions_gone()
    assert sshd.sessions() == []



def sigterm_when(proc, ready, wait=60):
    """SIGTERM to ``proc`` once ``ready()`` (within 60 s); its (stdout,
    stderr) once it has ended, within ``wait`` s (else it is killed)."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _names(pid, path):
    """Whether process ``pid`` has ``path`` in its argv (an scp left behind)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return path.encode() in fh.read()
    except OSError:
        return False
