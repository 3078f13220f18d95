"""Output and secrets, in one place.

Every line packrat prints, logs or mails passes through ``mask()``: the value
of each registered secret (every setting ``config.is_secret`` names:
ENCRYPTION_KEY, passwords, keys, tokens) is replaced by ``****`` so that no
secret reaches a terminal, a cron mail or the admin's mail. The output of
Bash modules passes through ``mask_bytes()``.

Values may hold bytes that are not UTF-8 (they arrive as surrogate escapes):
they are written back as the bytes they were, never a UnicodeEncodeError.
"""
import re
import sys

_secrets = set()
_verbose = False
_transcript = []  # every line printed in this run, masked, for the failure mail


def add_secret(value):
    """Register a secret value: it is masked from every output from now on."""
    if value:
        _secrets.add(str(value))


def _ordered(extra=()):
    # longest first, so that a secret containing another is masked whole
    return sorted(_secrets.union(s for s in extra if s), key=len, reverse=True)


# control characters other than newline and tab: a name from a remote
# listing or a database server could hold terminal escape sequences
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text):
    """``text`` with control characters (but newline and tab) written as
    ``\\xNN``: a hostile name (a remote file named with ESC sequences)
    never drives the admin's terminal."""
    return _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), text)


def mask(text, extra=()):
    """``text`` with every secret (and each of ``extra``) replaced by ****,
    and its control characters made visible (``printable``)."""
    text = str(text)
    for secret in _ordered(extra):
        text = text.replace(secret, "****")
    return printable(text)


def secret_bytes():
    """The registered secrets as bytes, longest first."""
    return [s.encode("utf-8", "surrogateescape") for s in _ordered()]


def mask_bytes(data):
    """``mask`` for bytes (a Bash module's output): bytes that are not UTF-8
    pass unchanged."""
    for secret in secret_bytes():
        data = data.replace(secret, b"****")
    return data


def set_verbose(flag):
    global _verbose
    _verbose = bool(flag)


def is_verbose():
    return _verbose


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


def verbose(message):
    """A progress line, printed with -v only (stdout, as the original did)."""
    if _verbose:
        line = mask(message)
        _transcript.append(line)
        _emit(sys.stdout, line)


def info(message):
    """A line printed always (dry run plans, check output)."""
    line = mask(message)
    _transcript.append(line)
    _emit(sys.stdout, line)


def warn(message):
    line = mask(message)
    _transcript.append(line)
    _emit(sys.stderr, line)


error = warn


def transcript():
    return list(_transcript)


def reset():
    """For tests running several runs in one process."""
    _secrets.clear()
    _transcript.clear()
    set_verbose(False)


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
