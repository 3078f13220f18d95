"""The one place that starts processes: commands, pipelines, secret files.

Commands are argv lists, never shell strings. Pipelines join their processes
with OS pipes (the ``sh`` package's ``_piped``), so the bytes of a dump never
pass through Python, and every process's exit status is checked.

Secrets reach programs through memory files passed as inherited
descriptors (``/dev/fd/N``: nothing on disk, gone when the process is), or
through the environment, never through argv; 0600 files in a private
directory only where memory files are not available.

Every child dies with packrat (``PR_SET_PDEATHSIG``, asked for by the
child of sh's fork, or by ``setpriv --pdeathsig`` for ``popen``): a run
killed with SIGKILL leaves no dump or dar process writing on. Processes
are started safely from any thread (``_start``: nothing between fork and
exec waits on a lock). What such a run leaves
on disk (``.packrat-tmp-PID-*`` files, its private directory) is removed by
the next run (core.temp.sweep_stale).

In a dry run (``dry_run=ctx.dry_run``, the run's flag, passed by the
caller), a command that would change something is printed instead of run;
read-only commands (``changes=False``) still run.
"""
import contextlib
import gc
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading

from pypackrat import log
from pypackrat.core import temp
from pypackrat.errors import PackratError

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


# A name, path or value holding bytes that are not UTF-8 is carried as
# Python carries it (surrogateescape) and reaches the program as those very
# bytes: sh encodes each argument with its _encoding, strictly.
ARGV_ENCODING = "packrat-utf-8-surrogateescape"


def _codec(name):
    import codecs
    if name.replace("_", "-") != ARGV_ENCODING:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(lambda text, errors="surrogateescape": utf8.encode(text, "surrogateescape"),
                            lambda data, errors="surrogateescape": utf8.decode(data, "surrogateescape"),
                            name=ARGV_ENCODING)


__import__("codecs").register(_codec)


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


# -- starting a process from a threaded program ------------------------------------
#
# packrat has threads (uploads, digests, sh's own readers and waiters), and
# sh starts a command with os.fork() and Python code in the child up to the
# exec. Whatever lock another thread held at the fork stays held in the
# child for good, so that code must take none. Three things could make it:
#
# - the garbage collector: sh turns it off around its fork, but that switch
#   is one for the whole process, and two threads starting commands at once
#   could leave it on at the other's fork (one turns it off, the other sees
#   it off, the first turns it back on, the second forks). A collection in
#   the child runs finalizers (a paramiko channel's or SFTP file's close,
#   which take the channel's lock and would even write to the parent's
#   connection). Seen as a child stuck in threading's after-fork clean-up.
#   So every start holds _STARTING, with the collector off.
# - a signal with a Python handler (packrat's SIGTERM, SIGINT): run in the
#   child, the handler would raise there, and sh lets a BaseException out:
#   the child would go on as a second packrat. The starting thread blocks
#   those signals over the fork; the child, once its handlers are back to
#   the default that exec would give them anyway, unblocks them. (sh's
#   reader and waiter threads of the command, made during the start, keep
#   them blocked: they start no process, and the signals go to the others.)
# - an import: the codecs sh encodes argv and its report with are looked up
#   (an import of the encodings package, under a module lock) once, before
#   the first fork, and cached.
# subprocess.Popen without a preexec_fn runs no Python in its child; popen()
# below asks for the parent-death signal through setpriv instead.

PR_SET_PDEATHSIG = 1
_STARTING = threading.Lock()
_ready = []  # [libc prctl or None], filled under _STARTING before the first fork


def _prepare(sh):
    """Once, before the first fork: what the child needs, looked up here."""
    if _ready:
        return _ready[0]
    for encoding in (ARGV_ENCODING, sh.DEFAULT_ENCODING, "utf-8"):
        "".encode(encoding)  # looked up now, cached: no import in the child
    try:
        import ctypes
        prctl = ctypes.CDLL(None).prctl  # the child calls it: ctypes converts
        prctl.restype = ctypes.c_int     # the ints (small objects, no lock)
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        prctl = None
    _ready.append(prctl)
    return prctl


def _python_handled():
    """The signals that have a Python handler now (SIGINT's, packrat's SIGTERM)."""
    return [s for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP) and callable(signal.getsignal(s))]


def _child_setup(prctl, parent, handled, mask):
    """The function sh calls in the child between fork and exec: no import,
    no lock, no object of note made. Back to the default for the signals
    that had a Python handler, then ask the kernel to SIGKILL the child
    when packrat dies (the *thread* that forked: a command is started and
    waited for by the same thread); if packrat died already, end at once;
    then unblock the signals blocked over the fork."""
    dfl, getsignal, setsignal = signal.SIG_DFL, signal.getsignal, signal.signal
    kill = int(signal.SIGKILL)

    def setup():
        for signum in handled:
            if callable(getsignal(signum)):  # sh set SIGHUP, SIGPIPE its own way
                setsignal(signum, dfl)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), kill)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return setup


def _start(sh, argv, kw):
    """Start ``argv`` through sh (``_bg``), safely from any thread: one
    start at a time, the garbage collector off, the signals with a Python
    handler blocked in this thread until the child has exec'd."""
    command = sh.Command(argv[0])
    with _STARTING:
        prctl = _prepare(sh)
        handled = _python_handled()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        collecting = gc.isenabled()
        proc = None
        try:
            gc.disable()
            signal.pthread_sigmask(signal.SIG_BLOCK, handled)
            kw["_preexec_fn"] = _child_setup(prctl, os.getpid(), handled, mask)
            proc = command(*argv[1:], **kw)
        finally:
            if collecting:
                gc.enable()
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending SIGTERM lands here
            except BaseException:
                if proc is not None:
                    _stop([proc])
                raise
    return proc


# A child of subprocess.Popen dies with packrat too. setpriv (util-linux)
# sets the parent-death signal and execs a shell that checks that packrat
# is still its parent (it may have died before the request) and execs the
# program: no Python between fork and exec. The shell exports PWD, as any
# shell does.
_ORPHAN_CHECK = '[ "$PPID" = "$1" ] || kill -9 $$; shift; exec "$@"'
_setpriv_found = []  # [path or None], looked up once


def _setpriv():
    """setpriv's path, if it can set the parent-death signal (util-linux 2.33)."""
    if not _setpriv_found:
        import subprocess
        path = shutil.which("setpriv")
        try:
            usage = subprocess.run([path, "--help"], stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30).stdout if path else b""
        except (OSError, subprocess.SubprocessError):
            usage = b""
        if b"--pdeathsig" not in usage:
            path = None
            log.verbose("setpriv (util-linux) with --pdeathsig not found: hooks, modules and the "
                        "configuration's shell do not die with packrat")
        _setpriv_found.append(path)
    return _setpriv_found[0]


def _exec_problem(argv0, env, cwd):
    """The OSError subprocess.Popen would raise for a program that cannot be
    run (none by that name, not executable, not a program), or None."""
    import errno
    if os.sep in argv0:
        path = os.path.join(cwd, argv0) if cwd is not None else argv0
        if not os.path.exists(path):
            return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    else:
        path = shutil.which(argv0, path=os.pathsep.join(os.get_exec_path(env)))
        if path is None:
            return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv0)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    if not (head.startswith(b"#!") or head == b"\x7fELF"):  # the shell would run it as a script
        return OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), argv0)
    return None


def popen(argv, **kwargs):
    """subprocess.Popen(argv, **kwargs) for a program that dies with packrat
    (not for a preexec_fn: none is needed). A program that cannot be run
    raises the OSError Popen would."""
    import subprocess
    argv = [os.fspath(a) for a in argv]
    setpriv = _setpriv()
    if setpriv:
        problem = _exec_problem(argv[0], kwargs.get("env"), kwargs.get("cwd"))
        if problem is not None:
            raise problem
        argv = [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _ORPHAN_CHECK,
                "packrat-child", str(os.getpid())] + argv
    return subprocess.Popen(argv, **kwargs)


def _kwargs(env, ok_codes, pass_fds, cwd, clean_env=False, argv=()):
    # each command in a process group of its own, so that stopping packrat
    # (SIGTERM, Ctrl-C) stops the command and everything it started; the
    # child's set-up (_preexec_fn) is made by _start
    kw = {"_ok_code": list(ok_codes), "_tty_out": False, "_return_cmd": True, "_new_group": True,
          "_encoding": ARGV_ENCODING}
    if env is not None or clean_env:
        kw["_env"] = _env(env, clean_env)
    fds = set(pass_fds) | named_secret_fds(argv, env)
    if fds:
        kw["_pass_fds"] = fds
    if cwd is not None:
        kw["_cwd"] = str(cwd)
    return kw


def _missing(argv0):
    """None when ``argv0`` can be run, else the line saying it is missing."""
    if os.sep in argv0:
        if os.path.isfile(argv0) and os.access(argv0, os.X_OK):
            return None
        return "%s is not installed (no such program)" % argv0
    if shutil.which(argv0):
        return None
    return "%s is not installed (not found in PATH)" % argv0


def run(argv, *, env=None, clean_env=False, ok_codes=(0,), stdin=None, stdout=None,
        stderr=None, pass_fds=(), cwd=None, changes=True, quiet=False, dry_run=False):
    """Run one command and wait for it.

    stdout: None to capture (returned as text), a path (str or Path) to write,
    an open file or descriptor, or "inherit" for packrat's own stdout.
    stderr: None to capture (its tail goes into the error message) or
    "inherit". env adds to packrat's environment (replaces it with
    clean_env). A ``/dev/fd/N`` of ``secret_path`` named in argv or env is
    passed on by itself. With ``dry_run`` (the run's flag) a command that
    ``changes`` something is printed, not run. Returns a Result (code, out,
    err), or None in dry run.
    """
    argv = [str(a) for a in argv]
    if not quiet:
        log.verbose(show(argv))
    if dry_run and changes:
        log.info("[dry run] would run: %s" % show(argv))
        return None
    missing = _missing(argv[0])
    if missing:
        raise PackratError(missing)
    sh = _sh()
    kw = _kwargs(env, ok_codes, pass_fds, cwd, clean_env, argv)
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
            proc = _start(sh, argv, kw)
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


# What a process prints when its reader went away first: it did not fail
# for a reason of its own (mysqldump: "Got errno 32 on write", openssl and
# others: "Broken pipe" / "EPIPE").
_BROKEN_PIPE = re.compile(r"broken pipe|errno[ =:]*32\b|\bEPIPE\b", re.I)


def is_pipe_victim(failure):
    """True when a pipeline stage failed only because its neighbour exited
    first: killed by SIGPIPE, or saying so on stderr."""
    if failure.code == -signal.SIGPIPE:
        return True
    return bool(_BROKEN_PIPE.search(failure.stderr or ""))


def first_cause(failures):
    """The failure to report of a pipeline's failed stages (in pipe order):
    the first one that failed for a reason of its own (a full disk, a
    refused login), before those killed by their neighbour's exit."""
    own = [f for f in failures if not is_pipe_victim(f)]
    return (own or failures)[0]


def pipeline(stages, out, *, env=None, pass_fds=(), stage_fds=None, ok_codes=None, dry_run=False,
             shown=None):
    """Run ``stages[0] | stages[1] | ... > out`` with OS pipes between them.

    ``pass_fds`` go to every stage; ``stage_fds``, one collection per stage,
    each to its own stage only (a key's descriptor to the one program that
    reads it).

    ``out`` is a path or an open binary file; ``shown``, what the verbose
    line names as the destination (the final name of a file written under
    a temporary one). Every process's exit status is
    checked (ok_codes: a list of accepted codes per stage, default 0 only);
    the failure reported is the first stage in pipe order that failed for a
    reason of its own (not by SIGPIPE or a broken pipe: a full disk shows as
    the compressor's "No space left on device", not as the dump's broken
    pipe). Nothing starts when a program is missing. Returns a Result per
    stage (code, err: its stderr), or None with ``dry_run`` (the run's
    flag: the pipeline is printed, not run).
    """
    stages = [[str(a) for a in argv] for argv in stages]
    line = " | ".join(show(a) for a in stages)
    shown = shown or (out if isinstance(out, (str, os.PathLike)) else "(%s)" % getattr(out, "name", "a file"))
    log.verbose("%s > %s" % (line, shown))
    if dry_run:
        log.info("[dry run] would run: %s > %s" % (line, shown))
        return None
    missing = [m for m in (_missing(argv[0]) for argv in stages) if m]
    if missing:
        raise PackratError("; ".join(missing))
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
            fds = set(pass_fds) | set(stage_fds[i] if stage_fds else ())
            kw = _kwargs(env, ok_codes[i], fds, None, argv=argv)
            kw.update(_bg=True, _bg_exc=False)
            if upstream is not None:
                kw["_in"] = upstream
            if i < len(stages) - 1:
                kw["_piped"] = True
            else:
                kw["_out"] = out
            try:
                upstream = _start(sh, argv, kw)
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
            raise first_cause(failures)
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

def create_private(path):
    """Create ``path`` afresh for writing, mode 0600, with O_EXCL|O_NOFOLLOW:
    whatever was there (a stale temporary, or a symlink planted by someone
    who can write to the directory) is unlinked, never followed, and the
    file is created again exclusively. Returns the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        os.unlink(path)  # removes a link itself, not its target
        fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask; created 0600 already
    except OSError:  # a share whose modes are fixed by its mount options
        pass
    return fd


@contextlib.contextmanager
def atomic_output(final_path):
    """Yield a temporary path beside ``final_path``; rename it to the final
    name only when the block succeeds, remove it otherwise. A failed backup
    thus never leaves a file under its final name."""
    final_path = os.fspath(final_path)
    directory, name = os.path.split(final_path)
    tmp = os.path.join(directory, temp.temporary_name(name))
    try:
        yield tmp
        os.replace(tmp, final_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_private_dir = None


def private_dir():
    """A 0700 directory for this run's secret files, removed at exit (and,
    after a run killed before its exit, by the next run: its name holds the
    PID)."""
    global _private_dir
    if _private_dir is None or not os.path.isdir(_private_dir):
        _private_dir = tempfile.mkdtemp(prefix=temp.private_prefix(), dir=temp.private_bases()[0])
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
        os.write(fd, content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content)
        os.close(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _memory_file(data):
    fd = os.memfd_create("packrat-secret", 0)  # inheritable, not close-on-exec
    try:
        os.fchmod(fd, 0o600)  # clients ignore option/password files others may write or read
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def secret_fd(content):
    """An inheritable descriptor holding ``content`` (a memory file, nothing on
    disk, mode 0600), for ``-pass fd:N`` or ``/dev/fd/N``; closed when the
    block ends. Pass it to commands with ``pass_fds``."""
    fd = _memory_file(content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content)
    try:
        yield fd
    finally:
        os.close(fd)


_secret_paths = {}  # "/dev/fd/N" -> N, while its secret_path block runs


@contextlib.contextmanager
def secret_path(content, name="secret"):
    """A path a program opens to read ``content``: ``/dev/fd/N`` of a memory
    file (nothing on disk, not even after SIGKILL). ``run`` and ``pipeline``
    pass the descriptor to every command whose argv or environment names
    the path, so it works in place of a file path (``--defaults-file=``,
    ``PGPASSFILE``). Where memory files do not exist, a 0600 file of
    ``secret_file``."""
    data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
    try:
        fd = _memory_file(data)
    except (AttributeError, OSError):
        with secret_file(data, name) as path:
            yield path
        return
    path = "/dev/fd/%d" % fd
    _secret_paths[path] = fd
    try:
        yield path
    finally:
        _secret_paths.pop(path, None)
        os.close(fd)


def named_secret_fds(argv, env=None):
    """The descriptors of the ``secret_path`` paths that ``argv`` or ``env``
    names: what a command started outside ``run`` must inherit."""
    if not _secret_paths:
        return set()
    words = list(argv) + [str(v) for v in (env or {}).values()]
    found = set()
    for path, fd in _secret_paths.items():
        # "/dev/fd/1" must not match inside "/dev/fd/12"
        pattern = re.compile(re.escape(path) + r"(?![0-9])")
        if any(pattern.search(word) for word in words):
            found.add(fd)
    return found


# -- politeness: NICE and IONICE ------------------------------------------------

# IONICE's classes (ionice -c): realtime is refused, it can starve the machine
IONICE_CLASSES = {"best-effort": 2, "idle": 3}
_IONICE = re.compile(r"([a-z-]+)(?::([0-9]))?")


def parse_ionice(value):
    """(class number, level or None) of an IONICE value (``idle``,
    ``best-effort``, ``best-effort:7``); ValueError with the reason."""
    m = _IONICE.fullmatch(value)
    if m and m.group(1) == "realtime":
        raise ValueError("realtime is refused: a backup in the realtime class can starve the machine's "
                         "own work; best-effort:0 is the highest ordinary priority")
    if not m or m.group(1) not in IONICE_CLASSES:
        raise ValueError("must be idle, best-effort or best-effort:LEVEL (0, the highest, to 7)")
    name, level = m.group(1), m.group(2)
    if level is not None and (name == "idle" or int(level) > 7):
        raise ValueError("idle takes no level" if name == "idle" else "a best-effort level is 0 to 7")
    return IONICE_CLASSES[name], None if level is None else int(level)


def politeness_problem(settings):
    """The configuration error of IONICE, or None (NICE's range is declared)."""
    if not settings.valid("IONICE") or not settings["IONICE"]:
        return None
    try:
        parse_ionice(settings["IONICE"])
    except ValueError as exc:
        return "%s: IONICE=%r: %s" % (settings.where("IONICE"), settings["IONICE"], exc)
    return None


def polite(ctx):
    """Apply NICE and IONICE to packrat's own process, early in the run:
    every program it starts afterwards (dar, dumps, compressors, ssh,
    hooks) inherits them. Unset, the scheduling stays as it was. A value
    that cannot be applied (a negative NICE without the right to it) is a
    warning: the backup matters more than its manners."""
    settings = ctx.settings
    nice, ionice = settings["NICE"], settings["IONICE"]
    if ctx.dry_run:
        if nice is not None or ionice:
            log.info("[dry run] the run would go at NICE=%s IONICE=%s"
                     % ("(unchanged)" if nice is None else nice, ionice or "(unchanged)"))
        return
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            log.verbose("niceness set to %d (NICE)" % nice)
        except OSError as exc:
            log.warn("Warning: %s: NICE=%d: cannot be applied: %s; the run goes at niceness %d"
                     % (settings.where("NICE"), nice, exc.strerror or exc, os.getpriority(os.PRIO_PROCESS, 0)))
    if ionice:
        klass, level = parse_ionice(ionice)
        argv = ["ionice", "-c", str(klass)] + (["-n", str(level)] if level is not None else [])
        argv += ["-p", str(os.getpid())]
        try:
            run(argv)
            log.verbose("I/O scheduling class set: %s (IONICE)" % ionice)
        except PackratError as exc:
            log.warn("Warning: %s: IONICE=%s: cannot be applied: %s" % (settings.where("IONICE"), ionice, exc))
