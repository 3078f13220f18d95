"""Output and secrets, in one place.

Every line packrat prints, logs or mails passes through ``mask()``: the value
of each registered secret (ENCRYPTION_KEY, passwords, S3 secret key) is
replaced by ``****`` so that no secret reaches a terminal, a cron mail or the
admin's mail.
"""
import sys

_secrets = set()
_verbose = False
_transcript = []  # every line printed in this run, masked, for the failure mail


def add_secret(value):
    """Register a secret value: it is masked from every output from now on."""
    if value:
        _secrets.add(str(value))


def mask(text):
    text = str(text)
    # longest first, so that a secret containing another is masked whole
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


def set_verbose(flag):
    global _verbose
    _verbose = bool(flag)


def is_verbose():
    return _verbose


def verbose(message):
    """A progress line, printed with -v only (stdout, as the original did)."""
    if _verbose:
        line = mask(message)
        _transcript.append(line)
        print(line, flush=True)


def info(message):
    """A line printed always (dry run plans, check output)."""
    line = mask(message)
    _transcript.append(line)
    print(line, flush=True)


def warn(message):
    line = mask(message)
    _transcript.append(line)
    print(line, file=sys.stderr, flush=True)


error = warn


def transcript():
    return list(_transcript)


def reset():
    """For tests running several runs in one process."""
    _secrets.clear()
    _transcript.clear()
    set_verbose(False)
