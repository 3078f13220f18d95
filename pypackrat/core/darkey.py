"""Handing dar the key: never in argv, never on disk.

dar reads ``-K`` (the archive's key) and ``-J`` (the reference's, for an
incremental) from a command file (DCF) given as ``-B /dev/fd/N``, where N
is an inherited memory-file descriptor. ``-K CIPHER:KEY`` makes an archive;
``-K :KEY`` and ``-J :KEY`` leave the cipher for dar to read from the
archive, so aes256 archives of this edition and blowfish archives of the
original read alike, whatever the key holds.
"""
import contextlib

from pypackrat import execute, log


def dcf_word(text):
    """``text`` as one word of a dar command file (DCF): in double quotes,
    with a backslash before each backslash, quote (dar groups with ``"``,
    ``'`` and backquote) and white-space character. Checked with dar 2.7.8
    against every ASCII character, control characters included."""
    return '"%s"' % "".join("\\" + c if c in "\\\"'`\t\n\r" else c for c in text)


def key_lines(key, cipher="", reference=False):
    """The DCF lines giving dar the key: ``-K CIPHER:KEY`` (``-K :KEY``
    without a cipher: reading an archive) and, with ``reference`` (an
    incremental being made), ``-J :KEY``."""
    lines = ["-K " + dcf_word("%s:%s" % (cipher, key))]
    if reference:
        lines.append("-J " + dcf_word(":" + key))
    return "\n".join(lines) + "\n"


class Key:
    """What a dar command needs for the key: ``args`` to add to its argv
    (``-B /dev/fd/N``, or nothing without a key) and ``pass_fds``."""

    def __init__(self, fd=None):
        self.fd = fd
        self.args = ["-B", "/dev/fd/%d" % fd] if fd is not None else []
        self.pass_fds = (fd,) if fd is not None else ()

    def __bool__(self):
        return self.fd is not None


@contextlib.contextmanager
def handed(key, cipher="", reference=False):
    """A Key holding ``key`` (ENCRYPTION_KEY) in a memory file for the
    block; an empty Key when ``key`` is empty. ``cipher`` and ``reference``
    as for ``key_lines``."""
    if not key:
        yield Key()
        return
    log.add_secret(key)
    lines = key_lines(key, cipher, reference)
    # the key's bytes as the config holds them, UTF-8 or not (as bash gave them to dar)
    with execute.secret_fd(lines.encode("utf-8", "surrogateescape")) as fd:
        yield Key(fd)
