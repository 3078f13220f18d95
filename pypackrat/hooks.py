"""The operator's hooks: PRE_BACKUP_COMMAND, POST_BACKUP_COMMAND and
ON_ERROR_COMMAND, each a Bash array run as an argv (no shell unless the
operator writes ``bash -c '...'``), in an environment built from nothing
but PATH, HOME, the locale and the run's facts: no secret of packrat's
environment or settings reaches a hook. A hook is stopped (its whole
process group) after HOOK_TIMEOUT seconds. With -n a hook is shown, not
run."""
import os
import signal
import subprocess
import tempfile

from pypackrat import execute, log

SKIP = 75  # EX_TEMPFAIL from the pre-hook: skip tonight without failing
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "USER", "LOGNAME")
_OUTPUT_LIMIT = 64 * 1024  # the end of a hook's output that goes to the log
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Skip(Exception):
    """The pre-hook asked to skip the night (exit status 75)."""


def environment(ctx, new_files=(), failures=(), status=None):
    """The hook's whole environment."""
    env = {k: os.environ[k] for k in _KEPT if k in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(PACKRAT_DATE=ctx.today, PACKRAT_HOST=str(ctx.hostname),
               PACKRAT_BACKUP_DIR=str(ctx.backup_dir),
               PACKRAT_NEW_FILES="\n".join(str(f) for f in new_files),
               PACKRAT_FAILURES="\n".join(log.mask(f).replace("\n", " ") for f in failures))
    if status is not None:
        env["PACKRAT_EXIT_STATUS"] = str(status)
    # nothing that came from outside may carry a secret or a NUL
    return {k: log.mask(v).replace("\0", "") for k, v in env.items()}


def run(ctx, name, env):
    """Run hook ``name`` (a setting); its output (the last 64 KiB) goes to
    the log, masked. Returns (exit status, failure message): (None, None)
    when it is not set, (0, None) when it passed or in a dry run; 127 when
    it cannot start, 124 when it ran longer than HOOK_TIMEOUT."""
    argv = list(ctx.settings.get(name, []) or [])
    if not argv:
        return None, None
    shown = log.mask(execute.show(argv))
    if ctx.dry_run:
        log.info("[dry run] would run %s: %s" % (name, shown))
        return 0, None
    timeout = ctx.settings.get("HOOK_TIMEOUT", 3600)
    log.verbose("Running %s: %s" % (name, shown))
    # the output goes to an unnamed file, not a pipe: a hook that leaves a
    # daemon behind (holding its stdout) is done when it exits
    with tempfile.TemporaryFile() as out:
        try:
            proc = execute.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as exc:
            return 127, "%s: %s: cannot run %s: %s" % (ctx.settings.where(name), name,
                                                       log.mask(argv[0]), exc.strerror or exc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait()
            return 124, "%s: %s did not end within HOOK_TIMEOUT=%d seconds and was stopped" % (
                ctx.settings.where(name), name, timeout)
        except BaseException:
            _kill(proc)
            raise
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - _OUTPUT_LIMIT))
        data = out.read()
    if size > _OUTPUT_LIMIT:
        log.info("%s: (the first %d bytes of its output are not shown)" % (name, size - _OUTPUT_LIMIT))
    for line in log.mask_bytes(data).decode("utf-8", "replace").splitlines():
        log.info("%s: %s" % (name, line))
    code = proc.returncode
    if code < 0:
        code = 128 - code
    if code == 0:
        return 0, None
    return code, "%s: %s failed (exit status %d)" % (ctx.settings.where(name), name, code)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def pre(ctx):
    """PRE_BACKUP_COMMAND: None when it passed (or is not set), else the
    run's failure message. Raises Skip on exit status 75."""
    code, message = run(ctx, "PRE_BACKUP_COMMAND", environment(ctx))
    if code == SKIP:
        raise Skip()
    return message


def post(ctx, new_files, failures):
    """POST_BACKUP_COMMAND, after the uploads: None, or its failure."""
    status = 1 if failures else 0
    return run(ctx, "POST_BACKUP_COMMAND", environment(ctx, new_files, failures, status))[1]


def on_error(ctx, new_files, failures, status):
    """ON_ERROR_COMMAND, when the run failed: None, or its own failure."""
    return run(ctx, "ON_ERROR_COMMAND", environment(ctx, new_files, failures, status))[1]
