"""PRE_BACKUP_COMMAND, POST_BACKUP_COMMAND, ON_ERROR_COMMAND (issue #14):
real packrat runs. The hooks get the run's facts and no secret; a failing
pre-hook fails the run before anything is made (the purge included); exit
status 75 skips the night without failing it."""
import json
import os

from tests.archives import day, touch

DUMP_ENV = ("import json, os, sys; "
            "json.dump(dict(os.environ), open(sys.argv[1], 'w'))")


def python():
    import sys
    return sys.executable


def small_backup(penv, tmp_path, **settings):
    src = tmp_path / "src"
    touch(src / "a.txt", b"hello hooks")
    nas = tmp_path / "nas"
    nas.mkdir(exist_ok=True)
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas), **settings)
    return nas


def test_hooks_get_the_facts_and_no_secret(penv, tmp_path, smtp):
    post_env, err_env = tmp_path / "post.json", tmp_path / "err.json"
    small_backup(penv, tmp_path, ENCRYPTION_KEY="hook-secret-key-123",
                 POST_BACKUP_COMMAND=[python(), "-c", DUMP_ENV, str(post_env)],
                 ON_ERROR_COMMAND=[python(), "-c", DUMP_ENV, str(err_env)])
    proc = penv.run(date=day(0), env={"AWS_SECRET_ACCESS_KEY": "env-secret-456", "MY_TOKEN": "tok-789"},
                    check=0)
    env = json.loads(post_env.read_text())
    assert env["PACKRAT_DATE"] == day(0)
    assert env["PACKRAT_HOST"] == "testhost"
    new = env["PACKRAT_NEW_FILES"].split("\n")
    assert new and all(os.path.isfile(f) and day(0) in f for f in new)
    assert sorted(new) == sorted(str(p) for p in penv.backup_dir.iterdir())
    assert env["PACKRAT_FAILURES"] == "" and env["PACKRAT_EXIT_STATUS"] == "0"
    text = json.dumps(env)
    for secret in ("hook-secret-key-123", "env-secret-456", "tok-789"):
        assert secret not in text
    assert "AWS_SECRET_ACCESS_KEY" not in env and "ENCRYPTION_KEY" not in env
    assert not err_env.exists()  # a good night: no on-error hook
    assert "Traceback" not in proc.stderr


def test_on_error_hook_gets_the_failures_masked(penv, tmp_path, smtp):
    err_env = tmp_path / "err.json"
    penv.write(ENCRYPTION_KEY="hook-secret-key-123", UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(tmp_path / "hook-secret-key-123-missing"),
               ON_ERROR_COMMAND=[python(), "-c", DUMP_ENV, str(err_env)])
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    proc = penv.run("-U", day(0), date=day(0), check=1)
    env = json.loads(err_env.read_text())
    assert env["PACKRAT_EXIT_STATUS"] == "1"
    assert "missing" in env["PACKRAT_FAILURES"] and "****" in env["PACKRAT_FAILURES"]
    assert "hook-secret-key-123" not in json.dumps(env)
    assert len(smtp.messages) == 1, proc.stderr


def test_failing_pre_hook_fails_before_anything_is_made(penv, tmp_path, smtp):
    nas = small_backup(penv, tmp_path, PRE_BACKUP_COMMAND=["false"],
                       POST_BACKUP_COMMAND=["touch", str(tmp_path / "post-ran")])
    old = touch(penv.backup_dir / ("testhost-mysql-db-%s.sql.bz2" % day(30)))
    touch(penv.backup_dir / ("testhost-mysql-db-%s.sql.bz2" % day(1)))
    proc = penv.run(date=day(0), check=1)
    assert old.exists()  # not even the purge ran
    assert not any(day(0) in p.name for p in penv.backup_dir.iterdir())
    assert os.listdir(nas) == []
    assert not (tmp_path / "post-ran").exists()
    assert "PRE_BACKUP_COMMAND failed (exit status 1)" in proc.stderr
    assert len(smtp.messages) == 1 and "PRE_BACKUP_COMMAND" in smtp.bodies()[0]


def test_pre_hook_75_skips_the_night_without_failing(penv, tmp_path, smtp):
    nas = small_backup(penv, tmp_path, PRE_BACKUP_COMMAND=["bash", "-c", "exit 75"],
                       POST_BACKUP_COMMAND=["touch", str(tmp_path / "post-ran")],
                       ON_ERROR_COMMAND=["touch", str(tmp_path / "error-ran")])
    quiet = penv.run(date=day(0), check=0)
    assert quiet.stdout == ""  # under cron: no output, no cron mail for a skipped night
    proc = penv.run("-v", date=day(0), check=0)
    assert "skipped" in proc.stdout
    assert os.listdir(penv.backup_dir) == [] and os.listdir(nas) == []
    assert not (tmp_path / "post-ran").exists() and not (tmp_path / "error-ran").exists()
    assert smtp.messages == []


def test_hooks_run_without_a_shell_and_dry_run_shows_them(penv, tmp_path, smtp):
    marker = tmp_path / "x; touch injected"
    small_backup(penv, tmp_path, PRE_BACKUP_COMMAND=["touch", str(marker)])
    proc = penv.run("-n", date=day(0), check=0)
    assert "[dry run] would run PRE_BACKUP_COMMAND: touch" in proc.stdout
    assert not marker.exists()
    penv.run(date=day(0), check=0)
    assert marker.exists() and not (tmp_path / "injected").exists()


def test_hook_timeout_and_missing_program(penv, tmp_path, smtp):
    small_backup(penv, tmp_path, PRE_BACKUP_COMMAND=["sleep", "30"], HOOK_TIMEOUT=1)
    proc = penv.run(date=day(0), check=1, timeout=60)
    assert "did not end within HOOK_TIMEOUT=1 seconds" in proc.stderr
    penv.write(PRE_BACKUP_COMMAND=[str(tmp_path / "no-such-hook")])
    proc = penv.run(date=day(0), check=1)
    assert "cannot run" in proc.stderr and "Traceback" not in proc.stderr


def test_a_hook_that_leaves_a_daemon_is_done_when_it_exits(penv, tmp_path, smtp):
    """A pre-hook that starts a service (a child keeping its stdout open)
    does not hold the night until HOOK_TIMEOUT; its output is logged."""
    import time
    small_backup(penv, tmp_path, HOOK_TIMEOUT=60,
                 PRE_BACKUP_COMMAND=["bash", "-c", "echo mounted; (sleep 20 &) ; exit 0"])
    started = time.monotonic()
    proc = penv.run(date=day(0), check=0)
    assert time.monotonic() - started < 15
    assert "PRE_BACKUP_COMMAND: mounted" in proc.stdout
