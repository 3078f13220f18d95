"""An archive still being written: its slices, read while they grow.

While dar works, the uploads can already send what it has written: the
filesystem module makes the archive through ``dar -c - | dar_xform``, where
dar_xform writes each slice from first byte to last and never goes back
(dar itself, writing its slices directly, goes back to rewrite the data of
a file that did not compress), and hands the uploads a ``Growing``.

- Slice N is whole once slice N+1 is begun, or once the archive ended.
- Until the archive ended well, only the temporary names count: a file
  under a final name is an older archive of the same name (a second run
  the same day) or one planted there, never this one's.
- The archive ends well (``end(True)``) only after its slices have their
  final names; then an upload verifies the remote copies against those
  final files and gives them their final remote names. It ends badly
  (``end(False)``) when dar failed: the slices are removed, and an upload
  that read them stops with ``Abandoned`` and removes its remote copies.
- A reader never trusts what it read alone: ``Reader.digest`` (what was
  sent) is compared with the final file read again (``final_digest``)
  before a remote copy gets its final name.
"""
import hashlib
import os
import stat
import threading
import time

from pypackrat.core import names

POLL = 0.05  # how often a reader at the end of a growing slice looks again
DIGEST = "sha1"  # what was sent, against the final file: no protocol sees it


class Abandoned(Exception):
    """The archive being read was not made (dar failed): its remote copies
    are removed, and this is no failure of the upload."""


class Growing:
    """One archive being written: ``temp`` is the base name its slices have
    in ``directory`` until dar ends, ``base`` the final one."""

    def __init__(self, directory, temp, base):
        self.directory, self.temp, self.base = directory, temp, base
        self.ok = False
        self._ended = threading.Event()
        self._digests = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return "<archive %s, being written>" % os.path.join(self.directory, self.base)

    def end(self, ok):
        """dar ended: ``ok``, the slices have their final names; else they are gone."""
        self.ok = bool(ok)
        self._ended.set()

    def ended(self):
        return self._ended.is_set()

    def wait(self, timeout=None):
        return self._ended.wait(timeout)

    def temp_path(self, number):
        return os.path.join(self.directory, names.slice_name(self.temp, number))

    def final_path(self, number):
        return os.path.join(self.directory, names.slice_name(self.base, number))

    def owns(self, path):
        """Whether ``path`` is a final slice of this archive."""
        directory, name = os.path.split(str(path))
        return directory == self.directory and names.slice_of(name, self.base) is not None

    def exists(self, number):
        """Whether slice ``number`` was begun: under its temporary name, or
        its final one once the archive ended well."""
        if os.path.lexists(self.temp_path(number)):
            return True
        return self.ended() and self.ok and os.path.lexists(self.final_path(number))

    def whole(self, number):
        """Whether slice ``number`` will grow no more."""
        return self.ended() or self.exists(number + 1)

    def slice_numbers(self, stopped):
        """Slice numbers, each once it was begun, until the archive's last;
        ``stopped()`` is asked while waiting. Raises Abandoned when dar
        failed."""
        number = 1
        while True:
            while not self.exists(number):
                if self.ended():
                    if not self.ok:
                        raise Abandoned(self.base)
                    if self.exists(number):
                        break
                    return
                stopped()
                time.sleep(POLL)
            yield number
            number += 1

    def final_digest(self, number):
        """The DIGEST of final slice ``number`` (once the archive ended
        well), read once for every upload module."""
        from pypackrat.transfer import file_digest  # here: transfer imports this module
        with self._lock:
            if number not in self._digests:
                self._digests[number] = file_digest(self.final_path(number), DIGEST)
            return self._digests[number]


class Reader:
    """Slice ``number`` of ``growing`` as a file read from its first byte to
    its last, waiting at its end while it grows (``stopped()`` asked
    meanwhile: it raises to stop). Not seekable: what reads it takes it as a
    stream. Raises Abandoned once dar failed."""

    def __init__(self, growing, number, stopped):
        self.growing, self.number, self.stopped = growing, number, stopped
        self._hash = hashlib.new(DIGEST)
        self._fd = self._open()

    def _open(self):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            return self._regular(os.open(self.growing.temp_path(self.number), flags))
        except FileNotFoundError:
            pass
        # renamed meanwhile: the final name is this archive's once it ended well
        while not self.growing.wait(POLL):
            self.stopped()
        if not self.growing.ok:
            raise Abandoned(self.growing.base)
        return self._regular(os.open(self.growing.final_path(self.number), flags))

    def _regular(self, fd):
        """``fd`` if it is a plain file's (dar_xform's slice), else closed and refused."""
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError("slice %d of %s is not a plain file" % (self.number, self.growing.base))
        os.set_blocking(fd, True)
        return fd

    def readable(self):
        return True

    def seekable(self):
        return False

    def fileno(self):
        """The slice's descriptor, for a transport that reads parts of what
        was read already by position (s3's put_stream)."""
        return self._fd

    def read(self, size=-1):
        size = 1 << 20 if size is None or size < 0 else size
        while True:
            if self.growing.ended() and not self.growing.ok:
                raise Abandoned(self.growing.base)
            whole = self.growing.whole(self.number)  # asked before the read: nothing comes after
            data = os.read(self._fd, size)
            if data or whole:
                self._hash.update(data)
                return data
            self.stopped()
            time.sleep(POLL)

    def digest(self):
        """The DIGEST of what was read."""
        return self._hash.hexdigest()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
