"""Bash modules, run the way the original ran them (see shim.sh).

Each call starts one ``bash shim.sh``: the config sourced, then the values of
modules.d and of the command line, then every ``*.sh`` of MODULE_PATH
sourced into the same shell, then ``TODAY DOW DOM HOSTNAME OPT_VERBOSE
NEW_BACKUPS`` from this run, the original's ``verbose die email diemail``,
and finally ``mod_NAME``, ``list_NAME`` or ``purge_NAME FILE``.

The module's stdout and stderr reach packrat's own line by line as they
come, through the mask of secrets (log.mask_bytes): a module that prints a
password prints ``****``. Everything else comes back through a FIFO (the channel): ``die``/``diemail``
messages, ``email`` requests (mailed at once through mail.py, so the SMTP
settings apply), the final ``NEW_BACKUPS`` and the function's status. A
``die``, a ``diemail`` or a non-zero status raises one PackratError: the run
reports it with its other failures in its one mail, and exits 1.
"""
import contextlib
import glob
import os
import re
import shlex
import threading

from pypackrat import execute, log, mail, transfer
from pypackrat.errors import ConfigError, PackratError

SHIM_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.sh")
SUBJECT = "Packrat: Error"  # the original's email() used this subject for every mail
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Values packrat sets itself after the module files: never taken from settings.
RUN_VALUES = ("TODAY", "DOW", "DOM", "HOSTNAME", "OPT_VERBOSE", "NEW_BACKUPS")


def module_files(settings):
    """Every *.sh of MODULE_PATH (a colon-separated list), in order: the
    order they are sourced in, so a later file's function wins.

    Each is sourced as root: each directory and file must be root's (or the
    invoking user's) and not writable by group or others, or ConfigError
    names each one and the fix."""
    from pypackrat import config
    files, problems = [], []
    for directory in str(settings["MODULE_PATH"]).split(":"):
        if not directory:
            continue
        if os.path.isdir(directory):
            problems += config.untrusted(directory, "packrat sources its *.sh files as root "
                                         "(MODULE_PATH)", holds_files=True)
        found = sorted(glob.glob(os.path.join(directory, "*.sh")))
        for path in found:
            problems += config.untrusted(path, "packrat sources it as root (a Bash module of MODULE_PATH)")
        files += found
    if problems:
        error = ConfigError(problems)
        error.settings = settings  # ADMIN_EMAIL and SMTP, to mail the refusal of a nightly run
        raise error
    return files


def syntax_errors(settings):
    """One line for each file of MODULE_PATH bash cannot parse (``bash -n``:
    read, nothing run): every Bash module's run sources it, and fails."""
    lines = []
    for path in module_files(settings):
        result = execute.run(["bash", "-n", path], ok_codes=range(256), quiet=True, changes=False)
        if result.code != 0:
            err = result.err.strip()
            lines.append("MODULE_PATH=%s: %s (the Bash modules fail while this file is sourced)"
                         % (settings["MODULE_PATH"], err.splitlines()[0] if err else
                            "%s: bash -n exited with status %d" % (path, result.code)))
    return lines


def _definition(function):
    f = re.escape(function)
    # "f() {", "f ()", "function f {", "function f() {", "function f", each at a line's start
    return re.compile(r"^[ \t]*(?:function[ \t]+%s(?=[ \t]*(?:\(|\{|$|[ \t]))|%s[ \t]*\([ \t]*\))"
                      % (f, f), re.M)


def _defines(path, function):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return bool(_definition(function).search(fh.read()))
    except OSError:
        return False


def find(settings, name, role):
    """The Bash file that defines mod_NAME, or None. Where several files
    define it, the last one sourced wins, as in the original: that file."""
    found = None
    for path in module_files(settings):
        if _defines(path, "mod_" + name):
            found = path
    return found


def find_module(settings, name, role):
    """The BashModule ``name`` of ``role``, or None (plugins.resolve)."""
    path = find(settings, name, role)
    return BashModule(name, role, path) if path else None


class BashModule:
    """A Bash module, with the interface of plugins.PythonModule: its values
    are the shell's to check, its archives are named ``HOST-NAME-...``."""

    kind = "Bash"

    def __init__(self, name, role, path):
        self.name, self.role, self.where = name, role, path

    def describe(self):
        return "%s %s module %s: %s" % (self.kind, self.role, self.name, self.where)

    def check(self, settings):
        return []

    def requirements(self, settings):
        return []  # its files' syntax: plugins.requirements, once for all Bash modules

    def owns_names(self):
        """Its archives are the ``HOST-NAME-`` names (modules/example.sh)."""
        return True

    def backup(self, ctx):
        return [str(p) for p in backup(ctx, self.name, self.where)]

    def remote(self, ctx):
        return BashRemote(ctx, self.name, self.where)

    def upload(self, ctx, files):
        return upload(ctx, self.name, self.where, files)


# -- what the shell gets ------------------------------------------------------------

def _assign(name, value):
    if isinstance(value, (list, tuple)):
        return "%s=(%s)\n" % (name, " ".join(shlex.quote(str(v)) for v in value))
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return "%s=%s\n" % (name, shlex.quote("" if value is None else str(value)))


def settings_script(settings):
    """Assignments for the values the config file itself does not hold:
    those of modules.d/*.conf and of the command line (arrays as arrays)."""
    lines = []
    for name, value in settings.raw.items():
        where = settings.origin.get(name)
        if where in (settings.path, "default", "the kernel's host name") or where is None:
            continue
        if not _NAME.match(name) or name in RUN_VALUES:
            continue
        lines.append(_assign(name, value))
    return "".join(lines)


def run_values_script(ctx, new_backups, purge=()):
    values = [
        ("TODAY", ctx.today),
        ("DOW", ctx.dow),
        ("DOM", ctx.dom),
        ("HOSTNAME", ctx.hostname),
        ("OPT_VERBOSE", "1" if log.is_verbose() else ""),
        ("NEW_BACKUPS", " ".join(new_backups)),
        ("MODULE_PATH", str(ctx.settings["MODULE_PATH"])),
        ("__packrat_purge", list(purge)),
    ]
    return "".join(_assign(n, v) for n, v in values)


# -- the channel --------------------------------------------------------------------

class _Channel:
    """A FIFO the shell writes "KIND\\0TEXT\\0" messages to. A thread reads
    it while the module runs and mails each ``email`` request at once.
    packrat holds the FIFO open for writing too, so the shell never blocks
    on opening it and the reader stops on packrat's own "end" message."""

    def __init__(self, ctx, label):
        self.ctx, self.label = ctx, label
        self.path = os.path.join(execute.private_dir(), "shim-%d-%d.fifo" % (os.getpid(), id(self)))
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR)
        self.messages = []  # (kind, text) in order, except email
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            data = os.read(self.fd, 65536)
            if not data:
                return
            buf += data
            while buf.count(b"\0") >= 2:
                kind, text, buf = buf.split(b"\0", 2)
                # file names (NEW_BACKUPS, purged) are bytes: kept as Python
                # keeps a file name, bytes that are not UTF-8 as surrogates
                kind = kind.decode("utf-8", "replace")
                text = text.decode("utf-8", "surrogateescape")
                if kind == "end":
                    return
                if kind == "email":
                    self._mail(text)
                else:
                    self.messages.append((kind, text))

    def _mail(self, text):
        log.verbose("[%s] mailing %s: %s" % (self.label, self.ctx.settings["ADMIN_EMAIL"] or "nobody (ADMIN_EMAIL is empty)",
                                            text.splitlines()[0] if text else ""))
        mail.send(self.ctx.settings, SUBJECT, text + "\n", self.ctx.dry_run)

    def close(self):
        try:
            os.write(self.fd, b"end\0\0")
            self.thread.join(60)
        finally:
            os.close(self.fd)
            os.unlink(self.path)

    def last(self, kind):
        found = [t for k, t in self.messages if k == kind]
        return found[-1] if found else None

    def all(self, kind):
        return [t for k, t in self.messages if k == kind]


class _Outcome:
    def __init__(self, code, channel, out):
        self.code = code
        self.out = out
        self.dies = channel.all("die")
        self.missing = channel.last("nofunc")
        self.new = channel.last("new")
        self.failed = channel.last("failed")
        self.purged = channel.all("purged")


def _run(ctx, name, path, action, purge=(), new_backups=(), capture=False):
    """Run one function of the Bash module ``name`` (defined in ``path``);
    for "purge", purge_NAME once per name of ``purge``, in one shell."""
    settings = ctx.settings
    files = module_files(settings)
    label = name.upper()
    function = {"mod": "mod_", "list": "list_", "purge": "purge_"}[action] + name
    what = (" FILE for %d file%s" % (len(purge), "" if len(purge) == 1 else "s")) if action == "purge" else ""
    log.verbose("[%s] running %s%s (Bash, %s)" % (label, function, what, path))
    channel = _Channel(ctx, label)
    code, out = None, ""
    try:
        # memory files (/dev/fd/N): the settings hold the secrets, and
        # nothing of them stays on disk, even after a SIGKILL
        with execute.secret_path(settings_script(settings), "shim-settings") as settings_file, \
                execute.secret_path(run_values_script(ctx, new_backups, purge), "shim-run") as run_file:
            argv = ["bash", SHIM_SH, channel.path, settings.path, settings_file, run_file,
                    action, name, "--"] + files
            code, out = _stream(argv, capture)
    finally:
        channel.close()
    return _Outcome(code, channel, out)


# -- the module's output, masked ----------------------------------------------------

_LONG_LINE = 64 * 1024  # a line longer than this is written in pieces


def _safe_cut(data, point):
    """``point`` moved back so that no secret (nor the start of one whose
    rest is still to come) begins before it and goes on after it: each
    piece written is masked whole."""
    moved = True
    while moved and point > 0:
        moved = False
        for secret in log.secret_bytes():
            for i in range(max(0, point - len(secret) + 1), point):
                if secret.startswith(data[i:i + len(secret)]):
                    point, moved = i, True
                    break
    return point


class _Masked:
    """Bytes of one stream of the module, written to ``stream`` (packrat's
    stdout or stderr) a line at a time, secrets masked; or kept (capture)."""

    def __init__(self, stream, capture=False):
        self.stream, self.capture = stream, capture
        self.buf, self.kept = b"", bytearray()

    def feed(self, data, final=False):
        if self.capture:
            self.kept += data
            return
        self.buf += data
        if final:
            point = len(self.buf)
        else:
            point = self.buf.rfind(b"\n") + 1
            if point == 0 and len(self.buf) > _LONG_LINE:
                point = len(self.buf)
            point = _safe_cut(self.buf, point)
        if point:
            log.write_bytes(self.stream, log.mask_bytes(self.buf[:point]))
            self.buf = self.buf[point:]


def _stream(argv, capture=False):
    """Run the module's shell, in a process group of its own (stopped with
    packrat), stdin from /dev/null. Its stderr, and its stdout unless
    ``capture``, pass through the mask as they come. Returns (exit status,
    negative for a signal; captured stdout as text)."""
    import selectors
    import signal
    import subprocess
    import sys
    import time
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = execute.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, process_group=0, close_fds=True,
                             pass_fds=sorted(execute.named_secret_fds(argv)))
    except OSError as exc:
        raise PackratError("cannot start %s: %s" % (argv[0], exc.strerror))
    guard = _guard(proc.pid)
    sinks = {proc.stdout: _Masked(sys.stdout, capture), proc.stderr: _Masked(sys.stderr)}
    sel = selectors.DefaultSelector()
    try:
        for pipe in sinks:
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ)
        ended = None
        while sel.get_map():
            for key, _ in sel.select(0.2):
                try:
                    data = os.read(key.fileobj.fileno(), 65536)
                except BlockingIOError:
                    continue
                if data:
                    sinks[key.fileobj].feed(data)
                else:
                    sel.unregister(key.fileobj)
            if ended is None and proc.poll() is not None:
                ended = time.monotonic()
            elif ended is not None and time.monotonic() - ended > 2:
                break  # a job the module left running holds the pipe: stop reading
        for sink in sinks.values():
            sink.feed(b"", final=True)
        code = proc.wait()
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        _release(guard)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return code, bytes(sinks[proc.stdout].kept).decode("utf-8", "surrogateescape")


# A module's shell dies with packrat (PR_SET_PDEATHSIG), but what it starts
# does not: the kernel clears that request in every child it forks, so a
# `mysqldump > file` or a subshell of the module would go on after a
# SIGKILL of packrat, and write its file out in full. The guard is a small
# shell outside the module's process group that waits on a pipe from
# packrat: at end of file (packrat gone, however it died) it kills the
# whole group; told "done" (the module's function returned), it just exits.
_GUARD = 'read -r line; [ "$line" = done ] || kill -9 -"$1" 2>/dev/null; exit 0'


def _guard(pgid):
    import subprocess
    try:
        return subprocess.Popen(["sh", "-c", _GUARD, "packrat-guard", str(pgid)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, process_group=0)
    except OSError as exc:
        log.verbose("no guard for the module's processes: %s" % exc)
        return None


def _release(guard):
    import subprocess
    if guard is None:
        return
    with contextlib.suppress(OSError):
        guard.stdin.write(b"done\n")
    with contextlib.suppress(OSError):
        guard.stdin.close()
    try:
        guard.wait(5)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def _fail(role, name, path, function, outcome):
    """Raise the module's failure, if it failed."""
    if outcome.dies:
        message = "\n".join(m for m in outcome.dies if m.strip())
        raise PackratError(message or "%s module %s: %s called die (%s)" % (role, name, function, path))
    if outcome.code:
        what = ("was killed by signal %d" % -outcome.code if outcome.code < 0
                else "exited with status %d" % outcome.code)
        raise PackratError("%s module %s: %s %s (%s)" % (role, name, function, what, path))


def _missing(role, name, outcome, settings):
    return PackratError("%s module %s: %s is not defined once the *.sh files of MODULE_PATH=%s are sourced"
                        % (role, name, outcome.missing, settings["MODULE_PATH"]))


# -- what run.py calls ----------------------------------------------------------

def backup(ctx, name, path):
    """Run the Bash backup module ``mod_NAME``; return the paths it appended
    to NEW_BACKUPS."""
    if ctx.dry_run:
        log.info("[dry run] would run mod_%s of the Bash module %s" % (name, path))
        return []
    before = list(ctx.new_backups)
    outcome = _run(ctx, name, path, "mod", new_backups=before)
    if outcome.missing:
        raise _missing("backup", name, outcome, ctx.settings)
    _fail("backup", name, path, "mod_" + name, outcome)
    seen = set(before)
    made, missing = [], []
    for word in (outcome.new or "").split():
        full = os.path.abspath(word)
        if word in seen or full in seen:
            continue
        seen.add(full)
        (made if os.path.isfile(full) else missing).append(full)
    if missing:
        error = PackratError("backup module %s: NEW_BACKUPS names %s, which is not a file (%s)"
                             % (name, ", ".join(missing), path))
        error.made = made  # the files that do exist are still uploaded
        raise error
    return made


def upload(ctx, name, path, files):
    """Run the Bash upload module ``mod_NAME`` with NEW_BACKUPS holding every
    new file of the run, space separated, as before."""
    for f in files:
        if any(c.isspace() for c in str(f)):
            log.warn("upload module %s: %s has white space in its name; the Bash module "
                     "sees it split into words (NEW_BACKUPS is space separated)" % (name, f))
    if ctx.dry_run:
        for f in files:
            log.info("[dry run] would upload %s with mod_%s of the Bash module %s" % (f, name, path))
        return
    outcome = _run(ctx, name, path, "mod", new_backups=[str(f) for f in files])
    if outcome.missing:
        raise _missing("upload", name, outcome, ctx.settings)
    _fail("upload", name, path, "mod_" + name, outcome)


class BashRemote(transfer.Lister):
    """A Bash upload module seen as a Lister, for the remote purge: list()
    runs list_NAME, delete(NAME) runs purge_NAME NAME. Bash modules do their
    own transport (mod_NAME), so this is no Transport: no put/get/size, no
    capability, and no retry (no error is classified transient)."""

    capabilities = frozenset()

    def __init__(self, ctx, name, path):
        super().__init__(ctx)
        self.name, self.path = name, path

    def describe(self):
        return "%s (Bash module %s)" % (self.name, self.path)

    def list(self):
        """The words list_NAME prints, as the original's ``$(list_NAME)``
        split them (no glob expansion). Not filtered here: the purge keeps
        only plain file names (run.remote_candidates, delete())."""
        outcome = _run(self.ctx, self.name, self.path, "list", capture=True)
        if outcome.missing:
            log.warn("upload module %s (%s) defines no list_%s: its remote archives are not purged"
                     % (self.name, self.path, self.name))
            return []
        _fail("upload", self.name, self.path, "list_" + self.name, outcome)
        return [w for w in re.split(r"[ \t\n]+", outcome.out) if w]

    def delete(self, remote_name):
        self.delete_many([remote_name])

    def delete_many(self, names):
        """purge_NAME FILE for each name, in one shell, as the original
        purged; stops at the first failure. Only plain file names."""
        names = list(names)
        for remote_name in names:
            if not transfer.safe_name(remote_name):
                raise PackratError("upload module %s: refusing to purge %r: not a plain file name"
                                   % (self.name, remote_name))
        if not names:
            return
        outcome = _run(self.ctx, self.name, self.path, "purge", purge=names)
        if outcome.missing:
            raise _missing("upload", self.name, outcome, self.settings)
        function = "purge_%s %s" % (self.name, outcome.failed or " ".join(names))
        _fail("upload", self.name, self.path, function, outcome)
