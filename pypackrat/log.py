"""Output and secrets, through the standard ``logging`` module.

Every line packrat prints goes through the "packrat" logger. A run sets up
its own output with ``setup()`` (config.load, Context and the command line
do): an ``Output`` holding the run's secrets (``core.secrets.Secrets``),
its verbosity (the logger's level) and its transcript (a handler). Before
any handler is installed, each gets the run's masking filter: the value of
each secret (every setting ``secrets.is_secret`` names: ENCRYPTION_KEY,
passwords, keys, tokens) is replaced by ``****`` and control characters are
made visible, so that no secret and no escape sequence reaches a terminal,
a cron mail or the admin's mail. The output of Bash modules passes through
``mask_bytes()``.

Progress lines (-v) and plain lines go to stdout, warnings and errors to
stderr, as the original's did; the streams are looked up when a line is
written (a test's redirection is honoured).

Values may hold bytes that are not UTF-8 (they arrive as surrogate escapes):
they are written back as the bytes they were, never a UnicodeEncodeError.

The functions below (info, verbose, warn, mask, add_secret...) act on the
output installed on the logger, so that callers need no handle on it. This
module keeps no state of its own.
"""
import logging
import logging.handlers
import re
import sys

from pypackrat.core.secrets import Secrets

LOGGER = "packrat"
VERBOSE = 15  # between DEBUG and INFO: lines shown with -v only


def _logger():
    return logging.getLogger(LOGGER)


# control characters other than newline and tab: a name from a remote
# listing or a database server could hold terminal escape sequences
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text):
    """``text`` with control characters (but newline and tab) written as
    ``\\xNN``: a hostile name (a remote file named with ESC sequences)
    never drives the admin's terminal."""
    return _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), text)


def one_line(text):
    """A message as one line: control characters, line breaks included,
    shown as escapes (a value with a line break stays in its line)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


class MaskFilter(logging.Filter):
    """Masks a record's text with the run's secrets and makes its control
    characters visible. Installed on the logger and on each of its handlers
    (a record of a child logger passes the handlers' filters only)."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def filter(self, record):
        if getattr(record, "packrat_masked", None) is not self:
            record.msg = printable(self.output.secrets.mask(record.getMessage()))
            record.args = ()
            record.packrat_masked = self
        return True


class _Below(logging.Filter):
    def __init__(self, level):
        super().__init__()
        self.level = level

    def filter(self, record):
        return record.levelno < self.level


class StreamHandler(logging.Handler):
    """Writes each line to sys.stdout or sys.stderr, looked up at each line."""

    def __init__(self, stream_name, level, below=None):
        super().__init__(level)
        self.stream_name = stream_name
        if below is not None:
            self.addFilter(_Below(below))

    def emit(self, record):
        # not logging's handleError: a closed pipe ends the run as before
        _emit(getattr(sys, self.stream_name), record.getMessage())


class Transcript(logging.Handler):
    """Every line printed in the run, masked."""

    def __init__(self):
        super().__init__(VERBOSE)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class Output:
    """One run's output: its secrets, verbosity and transcript, and the
    handlers that write to stdout and stderr, every one behind the run's
    masking filter."""

    def __init__(self, verbose=False, secrets=None):
        self.secrets = secrets if secrets is not None else Secrets()
        self.verbose = bool(verbose)
        self.filter = MaskFilter(self)
        self.transcript = Transcript()
        self.stdout = StreamHandler("stdout", VERBOSE, below=logging.WARNING)
        self.handlers = [self.stdout, StreamHandler("stderr", logging.WARNING), self.transcript]
        self.destinations = []  # LOG's handler (syslog or a file): every line, -v or not
        for handler in self.handlers:
            handler.addFilter(self.filter)  # before any handler can write

    def add_handler(self, handler):
        """Another destination of every line (progress lines too), behind the
        masking filter like the others."""
        handler.addFilter(self.filter)
        self.handlers.append(handler)
        self.destinations.append(handler)
        if self.installed():
            _logger().addHandler(handler)
            self.set_verbose(self.verbose)
        return handler

    def install(self):
        """Make this the output of the "packrat" logger, in place of the
        previous run's."""
        logger = _logger()
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for old in list(logger.filters):
            logger.removeFilter(old)
        logger.addFilter(self.filter)
        logger.propagate = False  # the run's handlers only, not the root logger's
        logger.disabled = False  # another library's logging.config does not silence packrat
        self.set_verbose(self.verbose)
        for handler in self.handlers:
            logger.addHandler(handler)
        return self

    def set_verbose(self, flag):
        """-v: progress lines on stdout (and in the transcript); a LOG
        destination gets them either way."""
        self.verbose = bool(flag)
        shown = VERBOSE if self.verbose else logging.INFO
        self.stdout.setLevel(shown)
        self.transcript.setLevel(shown)
        if self.installed():
            _logger().setLevel(VERBOSE if self.verbose or self.destinations else logging.INFO)

    def installed(self):
        return self.filter in _logger().filters


def setup(verbose=False, secrets=None):
    """A fresh output for a run (no secret, empty transcript), installed."""
    _tolerant_streams()
    return Output(verbose, secrets).install()


# -- LOG: syslog (the journal under systemd) or a file --------------------------------

SYSLOG_SOCKET = "/dev/log"
SYSLOG_WAIT = 2  # seconds a line may wait for a full syslog socket (twice: logging retries once)
_PRIORITY = ((logging.ERROR, "err"), (logging.WARNING, "warning"), (logging.INFO, "notice"), (0, "info"))


def level_word(levelno):
    """A line's level as syslog names it: info (progress, -v), notice (a
    plain line), warning, err."""
    for level, word in _PRIORITY:
        if levelno >= level:
            return word
    return "info"


class _Quiet:
    """A destination that fails (disk full, syslog gone) says so once on
    stderr, never with a traceback, and the run goes on."""
    failed = False

    def handleError(self, record):
        if not self.failed:
            self.failed = True
            exc = sys.exc_info()[1]
            _emit(sys.stderr, "Warning: LOG: cannot write to %s: %s" % (self.where, printable(str(exc))))


class SyslogHandler(_Quiet, logging.handlers.SysLogHandler):
    """Facility daemon, tag packrat[PID]; the priority is the line's level."""

    def __init__(self, address=None):
        import os
        self.where = address or os.environ.get("PACKRAT_SYSLOG_SOCKET") or SYSLOG_SOCKET
        super().__init__(self.where, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        self.ident = "packrat[%d]: " % os.getpid()
        self.setLevel(VERBOSE)

        self.append_nul = False
        self._level = logging.INFO

    def _connect_unixsocket(self, address):
        super()._connect_unixsocket(address)
        if self.socket is not None:
            self.socket.settimeout(SYSLOG_WAIT)  # a stuck syslog never stalls the backup

    def mapPriority(self, levelName):
        return level_word(self._level)

    def emit(self, record):
        if self.failed:  # said once; the terminal and the mail still get the lines
            return
        self._level = record.levelno  # mapPriority is given the level's name only
        super().emit(record)


class FileHandler(_Quiet, logging.Handler):
    """Appends "DATE TIME packrat[PID] LEVEL: line" to a file of root's."""

    def __init__(self, path):
        super().__init__(VERBOSE)
        self.where = path
        self.stream = open_log_file(path)
        import os
        self.pid = os.getpid()

    def emit(self, record):
        import time
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(record.created))
            for line in record.getMessage().split("\n"):
                self.stream.write("%s packrat[%d] %s: %s\n" % (stamp, self.pid, level_word(record.levelno), line))
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def close(self):
        try:
            self.stream.close()
        finally:
            super().close()


def open_log_file(path):
    """``path`` opened to append, created 0600; never through a symbolic
    link, never a file of another user's, nor one with another name (a hard
    link), nor in a directory others could swap: PackratError otherwise."""
    import os
    import stat
    from pypackrat.errors import PackratError
    from pypackrat import config
    problems = config.untrusted(os.path.dirname(path) or "/", "holds packrat's log (LOG)")
    if problems:
        raise PackratError(problems[0])
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise PackratError("LOG=%s: refusing it: it is a symbolic link" % path)
        raise PackratError("LOG=%s: cannot open it: %s" % (path, exc.strerror))
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "it is not a regular file"
    elif st.st_uid != os.geteuid():
        problem = "it is owned by %s, not by %s" % (config.owner_name(st.st_uid), config.invoker())
    elif st.st_nlink != 1:
        problem = "it has %d names (hard links)" % st.st_nlink
    elif st.st_mode & 0o022:
        problem = "it can be written by others (mode %04o)" % stat.S_IMODE(st.st_mode)
    if problem:
        os.close(fd)
        raise PackratError("LOG=%s: refusing it: %s" % (path, problem))
    return os.fdopen(fd, "a", encoding="utf-8", errors="surrogateescape")


def destination_problem(value):
    """What is wrong with LOG's value (empty, syslog or an absolute path), or None."""
    if value in ("", "syslog"):
        return None
    if not value.startswith("/") or _CONTROL.search(value) or value.endswith("/"):
        return "must be empty, syslog or the absolute path of a file"
    return None


def open_destination(value):
    """Send every line of the run to LOG's destination too (nothing for
    ""). A file that cannot be used safely is a PackratError; a syslog
    socket that is missing is a warning (the run's lines still reach the
    terminal and the mail)."""
    if not value:
        return None
    output = current()
    if value == "syslog":
        try:
            handler = SyslogHandler()
        except OSError as exc:
            warn("Warning: LOG=syslog: cannot reach the syslog socket: %s" % exc.strerror)
            return None
    else:
        handler = FileHandler(value)
    return output.add_handler(handler)


def current():
    """The output installed on the logger (one is set up if none is)."""
    for found in _logger().filters:
        if isinstance(found, MaskFilter):
            return found.output
    return setup()


def add_secret(value):
    """Register a secret value: it is masked from every output from now on."""
    current().secrets.add(value)


def mask(text, extra=()):
    """``text`` with every secret (and each of ``extra``) replaced by ****,
    and its control characters made visible (``printable``)."""
    return printable(current().secrets.mask(text, extra))


def secret_bytes():
    """The registered secrets as bytes, longest first."""
    return current().secrets.as_bytes()


def mask_bytes(data):
    """``mask`` for bytes (a Bash module's output): bytes that are not UTF-8
    pass unchanged."""
    return current().secrets.mask_bytes(data)


def set_verbose(flag):
    current().set_verbose(flag)


def is_verbose():
    return current().verbose


def transcript():
    return list(current().transcript.lines)


def _emit(stream, line):
    """Write one line; characters the stream cannot encode (surrogate
    escapes of non-UTF-8 bytes) are written as the bytes they stand for,
    or escaped."""
    stream = stream if stream is not None else sys.stdout
    try:
        stream.write(line + "\n")
    except UnicodeEncodeError:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(line.encode("utf-8", "surrogateescape") + b"\n")
        else:
            stream.write(line.encode("utf-8", "backslashreplace").decode("ascii", "replace") + "\n")
    stream.flush()


def write_bytes(stream, data):
    """Write bytes (already masked) to a text stream's buffer, as they are."""
    buffer = getattr(stream, "buffer", None)
    stream.flush()
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()


def _log(level, message):
    current()  # the masking filter is in place before the first line
    _logger().log(level, "%s", message)


def verbose(message):
    """A progress line, printed with -v only (stdout, as the original did)."""
    _log(VERBOSE, message)


def info(message):
    """A line printed always (dry run plans, check output)."""
    _log(logging.INFO, message)


def warn(message):
    """A warning, on stderr."""
    _log(logging.WARNING, message)


def error(message):
    """An error, on stderr."""
    _log(logging.ERROR, message)


def _tolerant_streams():
    """stdout and stderr write surrogate escapes back as their bytes (every
    writer: cli's error lines too), instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        try:
            stream.reconfigure(errors="surrogateescape" if encoding == "utf8" else "backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


_tolerant_streams()
