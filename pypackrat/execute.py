"""The one place that starts processes: commands, pipelines, secret files.

Commands are argv lists, never shell strings. Pipelines join their processes
with OS pipes (the ``sh`` package's ``_piped``), so the bytes of a dump never
pass through Python, and every process's exit status is checked.

Secrets reach programs through 0600 files in a private directory, through
inherited descriptors or through the environment, never through argv.

With dry run on, a command that would change something is printed instead of
run; read-only commands (``changes=False``) still run.
"""
import contextlib
import os
import shlex
import shutil
import sys
import tempfile

from pypackrat import log
from pypackrat.errors import PackratError

_dry_run = False


def set_dry_run(flag):
    global _dry_run
    _dry_run = bool(flag)


def dry_run():
    return _dry_run


class CommandFailed(PackratError):
    def __init__(self, argv, code, stderr=""):
        self.argv = list(argv)
        self.code = code
        self.stderr = stderr or ""
        tail = [l for l in self.stderr.strip().splitlines() if l.strip()
                and not l.startswith("No terminal found for user interaction")]
        detail = (": " + " / ".join(tail[-3:])) if tail else ""
        if code is not None and code < 0:
            what = "was killed by signal %d" % -code
        else:
            what = "exited with status %s" % code
        super().__init__(log.mask("%s %s%s" % (os.path.basename(self.argv[0]), what, detail)))


def show(argv):
    """The command as a shell would read it, secrets masked."""
    return log.mask(shlex.join(str(a) for a in argv))


def which(program):
    return shutil.which(program)


def require(program):
    path = shutil.which(program)
    if not path:
        raise PackratError("%s is not installed (not found in PATH)" % program)
    return path


def _sh():
    import sh  # imported here: it costs about 0.16 s, not wanted by `packrat -h`
    return sh


def _err_text(exc):
    data = getattr(exc, "stderr", b"") or b""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _stderr_of(proc):
    data = getattr(proc, "stderr", b"") or b""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _env(extra, clean=False):
    env = {} if clean else dict(os.environ)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err


def _kwargs(env, ok_codes, pass_fds, cwd, clean_env=False):
    # each command in a process group of its own, so that stopping packrat
    # (SIGTERM, Ctrl-C) stops the command and everything it started
    kw = {"_ok_code": list(ok_codes), "_tty_out": False, "_return_cmd": True, "_new_group": True}
    if env is not None or clean_env:
        kw["_env"] = _env(env, clean_env)
    if pass_fds:
        kw["_pass_fds"] = set(pass_fds)
    if cwd is not None:
        kw["_cwd"] = str(cwd)
    return kw


def run(argv, *, env=None, clean_env=False, ok_codes=(0,), stdin=None, stdout=None,
        stderr=None, pass_fds=(), cwd=None, changes=True, quiet=False):
    """Run one command and wait for it.

    stdout: None to capture (returned as text), a path (str or Path) to write,
    an open file or descriptor, or "inherit" for packrat's own stdout.
    stderr: None to capture (its tail goes into the error message) or
    "inherit". env adds to packrat's environment (replaces it with
    clean_env). Returns a Result (code, out, err), or None in dry run.
    """
    argv = [str(a) for a in argv]
    if not quiet:
        log.verbose(show(argv))
    if _dry_run and changes:
        log.info("[dry run] would run: %s" % show(argv))
        return None
    sh = _sh()
    kw = _kwargs(env, ok_codes, pass_fds, cwd, clean_env)
    opened = None
    try:
        if stdout == "inherit":
            kw["_out"] = sys.stdout.fileno()
            sys.stdout.flush()
        elif isinstance(stdout, (str, os.PathLike)):
            opened = open(stdout, "wb")
            kw["_out"] = opened
        elif stdout is not None:
            kw["_out"] = stdout
        if stderr == "inherit":
            kw["_err"] = sys.stderr.fileno()
            sys.stderr.flush()
        if stdin is not None:
            kw["_in"] = stdin
        kw.update(_bg=True, _bg_exc=False)
        try:
            proc = sh.Command(argv[0])(*argv[1:], **kw)
        except sh.CommandNotFound:
            raise PackratError("%s is not installed (not found in PATH)" % argv[0])
        try:
            proc.wait()
        except sh.ErrorReturnCode as exc:
            raise CommandFailed(argv, exc.exit_code, _err_text(exc)) from None
        except BaseException:
            _stop([proc])
            raise
        out = proc.stdout.decode("utf-8", "replace") if stdout is None else ""
        err = proc.stderr.decode("utf-8", "replace") if stderr is None else ""
        return Result(proc.exit_code, out, err)
    finally:
        if opened is not None:
            opened.close()


def pipeline(stages, out, *, env=None, pass_fds=(), ok_codes=None):
    """Run ``stages[0] | stages[1] | ... > out`` with OS pipes between them.

    ``out`` is a path or an open binary file. Every process's exit status is
    checked (ok_codes: a list of accepted codes per stage, default 0 only);
    the first failing stage in pipe order is reported. Returns a Result per
    stage (code, err: its stderr), or None in dry run.
    """
    stages = [[str(a) for a in argv] for argv in stages]
    line = " | ".join(show(a) for a in stages)
    log.verbose("%s > %s" % (line, out))
    if _dry_run:
        log.info("[dry run] would run: %s > %s" % (line, out))
        return None
    sh = _sh()
    ok_codes = ok_codes or [(0,)] * len(stages)
    opened = None
    procs = []
    try:
        if isinstance(out, (str, os.PathLike)):
            opened = open(out, "wb")
            out = opened
        upstream = None
        for i, argv in enumerate(stages):
            kw = _kwargs(env, ok_codes[i], pass_fds, None)
            kw.update(_bg=True, _bg_exc=False)
            if upstream is not None:
                kw["_in"] = upstream
            if i < len(stages) - 1:
                kw["_piped"] = True
            else:
                kw["_out"] = out
            try:
                upstream = sh.Command(argv[0])(*argv[1:], **kw)
            except sh.CommandNotFound:
                raise PackratError("%s is not installed (not found in PATH)" % argv[0])
            procs.append(upstream)
        failures = []
        for argv, proc in zip(stages, procs):
            try:
                proc.wait()
            except sh.ErrorReturnCode as exc:
                failures.append(CommandFailed(argv, exc.exit_code, _err_text(exc)))
        if failures:
            raise failures[0]
        return [Result(proc.exit_code, "", _stderr_of(proc)) for proc in procs]
    except BaseException:
        _stop(procs)
        raise
    finally:
        if opened is not None:
            opened.close()


def _stop(procs):
    """Kill each command's process group (the command and its children)."""
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.process.kill_group()


# -- files -----------------------------------------------------------------

@contextlib.contextmanager
def atomic_output(final_path):
    """Yield a temporary path beside ``final_path``; rename it to the final
    name only when the block succeeds, remove it otherwise. A failed backup
    thus never leaves a file under its final name."""
    final_path = os.fspath(final_path)
    directory, name = os.path.split(final_path)
    tmp = os.path.join(directory, ".packrat-tmp-%d-%s" % (os.getpid(), name))
    try:
        yield tmp
        if not _dry_run:
            os.replace(tmp, final_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


TEMP_PREFIX = ".packrat-tmp-"


def is_temporary(name):
    return os.path.basename(name).startswith(TEMP_PREFIX)


_private_dir = None


def private_dir():
    """A 0700 directory for this run's secret files, removed at exit."""
    global _private_dir
    if _private_dir is None or not os.path.isdir(_private_dir):
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _private_dir = tempfile.mkdtemp(prefix="packrat-", dir=base)
        os.chmod(_private_dir, 0o700)
        import atexit
        atexit.register(shutil.rmtree, _private_dir, True)
    return _private_dir


@contextlib.contextmanager
def secret_file(content, name="secret"):
    """A 0600 file holding ``content``, removed when the block ends."""
    fd, path = tempfile.mkstemp(prefix=name + "-", dir=private_dir())
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode() if isinstance(content, str) else content)
        os.close(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def secret_fd(content):
    """An inheritable descriptor holding ``content`` (a memory file, nothing on
    disk), for ``-pass fd:N`` or ``/dev/fd/N``; closed when the block ends."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.memfd_create("packrat-secret", 0)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        yield fd
    finally:
        os.close(fd)
