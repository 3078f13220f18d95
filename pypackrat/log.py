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
        self.handlers = [StreamHandler("stdout", VERBOSE, below=logging.WARNING),
                         StreamHandler("stderr", logging.WARNING),
                         self.transcript]
        for handler in self.handlers:
            handler.addFilter(self.filter)  # before any handler can write

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
        self.verbose = bool(flag)
        if self.installed():
            _logger().setLevel(VERBOSE if self.verbose else logging.INFO)

    def installed(self):
        return self.filter in _logger().filters


def setup(verbose=False, secrets=None):
    """A fresh output for a run (no secret, empty transcript), installed."""
    _tolerant_streams()
    return Output(verbose, secrets).install()


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
