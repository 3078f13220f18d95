"""Upload module ``local``: copy the archives into a directory, such as a
mounted NAS share (setting LOCAL_DIR). The reference implementation of the
upload interface.

LOCAL_DIR may be writable by others (another host of the share), so every
file packrat writes there is created afresh with O_EXCL|O_NOFOLLOW, mode
0600: a symlink planted at the temporary name is removed, never followed;
before the temporary is renamed, ``lstat`` must still find the very file
that was written (same inode), so a file swapped in meanwhile is refused.
"""
import os
import stat

from pypackrat import log
from pypackrat.execute import create_private
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting
from pypackrat.transfer import Transport, file_digest

SETTINGS = Group(
    "Local upload module (a mounted share, say)",
    Setting("LOCAL_DIR", required=True,
            meaning="The directory the archives are copied into (an absolute path), such as a mounted "
                    "NAS share."))

BLOCK = 1 << 20


def check(settings):
    """``settings``: a settings.View (an empty LOCAL_DIR: SETTINGS says it is required)."""
    directory = settings["LOCAL_DIR"]
    if directory and not directory.startswith("/"):
        return ["%s: LOCAL_DIR=%r: must be an absolute path" % (settings.where("LOCAL_DIR"), directory)]
    return []


def requirements(settings):
    """LOCAL_DIR must be a directory now (a share not mounted tonight fails
    this upload only, at run time)."""
    directory = settings["LOCAL_DIR"]
    if not directory.startswith("/") or os.path.isdir(directory):
        return []
    what = "is not a directory" if os.path.lexists(directory) else "does not exist"
    return ["%s: LOCAL_DIR=%s %s (is the share mounted?): the local upload will fail"
            % (settings.where("LOCAL_DIR"), directory, what)]


def _open_regular(path):
    """A read descriptor of ``path``, which must be a regular file and not
    a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PackratError("%s is not a regular file" % path)
    return fd


def _identity(st):
    """What tells the file packrat wrote from one put in its place: the
    inode (which a new file may reuse), the owner, size and mtime."""
    return st.st_dev, st.st_ino, st.st_uid, st.st_size, st.st_mtime_ns


class Remote(Transport):
    name = "local"
    capabilities = frozenset({"transfer", "checksum", "bulk_delete", "stream"})

    def __init__(self, ctx):
        super().__init__(ctx)
        self.directory = self.settings["LOCAL_DIR"]
        self._written = {}  # name -> identity (_identity) of the file put wrote

    def describe(self):
        return "local:%s" % self.directory

    def open(self):
        if not os.path.isdir(self.directory):
            raise OSError("LOCAL_DIR %s is not a directory (is the share mounted?)" % self.directory)
        self.owner = self._probe_owner()

    def _probe_owner(self):
        """The owner the files packrat writes here get: its own uid, or
        another where the share maps it (an NFS export squashing root, a
        CIFS mount with uid=). Learnt from a file made and removed at once;
        in a dry run, which writes nothing, packrat's own uid; None where
        packrat cannot write (a read-only share, for a restore)."""
        if self.ctx.dry_run:
            return os.geteuid()
        path = self._path(".packrat-probe-%d" % os.getpid())
        try:
            fd = create_private(path)
        except OSError as exc:
            log.verbose("%s: cannot write here (%s)" % (self.describe(), exc.strerror or exc))
            return None
        try:
            return os.fstat(fd).st_uid
        finally:
            os.close(fd)
            os.unlink(path)

    def foreign(self, names):
        """The names of ``names`` that another user owns: files packrat did
        not write. In a share others may write to (a sticky directory, where
        they cannot delete packrat's files), a planted file must not become
        this host's newest backup, which would make the purge delete the
        real ones."""
        owner = self.owner
        if owner is None:
            return set()
        out = set()
        for name in names:
            try:
                if os.lstat(self._path(name)).st_uid != owner:
                    out.add(name)
            except FileNotFoundError:
                pass
        return out

    def _path(self, name):
        return os.path.join(self.directory, name)

    def put(self, local_path, remote_name, progress=None):
        with os.fdopen(_open_regular(local_path), "rb") as src:
            self._store(src, remote_name, progress)

    def put_stream(self, reader, remote_name, progress=None):
        self._store(reader, remote_name, progress)

    def _store(self, src, remote_name, progress):
        dest = self._path(remote_name)
        self._written.pop(remote_name, None)
        fd = create_private(dest)
        with os.fdopen(fd, "wb") as dst:
            self._copy_from(src, dst, progress)
            written = os.fstat(dst.fileno())
        # what the path shows once the file is closed (a NAS may set its
        # mtime at the close), taken only if it is still the file written
        st = os.lstat(dest)
        if not stat.S_ISREG(st.st_mode) or _identity(st)[:3] != _identity(written)[:3]:
            raise PackratError("%s: %s was replaced by someone else while packrat wrote it"
                               % (self.describe(), dest))
        self._written[remote_name] = _identity(st)

    def get(self, remote_name, local_path, progress=None):
        fd = create_private(local_path)
        with os.fdopen(fd, "wb") as dst:
            self._copy(self._path(remote_name), dst, progress)

    @staticmethod
    def _copy(source, dst, progress):
        with os.fdopen(_open_regular(source), "rb") as src:
            Remote._copy_from(src, dst, progress)

    @staticmethod
    def _copy_from(src, dst, progress):
        done = 0
        while True:
            block = src.read(BLOCK)
            if not block:
                break
            dst.write(block)
            done += len(block)
            if progress:
                progress(done)
        dst.flush()
        os.fsync(dst.fileno())

    def _ours(self, name, path):
        """Raise unless ``path`` is still the regular file put wrote as ``name``."""
        expected = self._written.get(name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if expected is None or st is None or not stat.S_ISREG(st.st_mode) or _identity(st) != expected:
            raise PackratError("%s: %s is no longer the file packrat wrote (replaced or removed by "
                               "someone else meanwhile); refusing to rename it" % (self.describe(), path))

    def rename(self, old, new):
        old_path, new_path = self._path(old), self._path(new)
        if old in self._written:
            self._ours(old, old_path)
            os.replace(old_path, new_path)  # replaces a link at new, never follows it
            self._written[new] = self._written.pop(old)
            self._ours(new, new_path)
        else:  # not put by this run
            if not stat.S_ISREG(os.lstat(old_path).st_mode):
                raise PackratError("%s: %s is not a regular file" % (self.describe(), old_path))
            os.replace(old_path, new_path)

    def size(self, remote_name):
        try:
            st = os.lstat(self._path(remote_name))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def checksum(self, remote_name):
        with os.fdopen(_open_regular(self._path(remote_name)), "rb") as fh:
            return "sha256", file_digest(fh, "sha256")

    def list(self):
        return sorted(e.name for e in os.scandir(self.directory) if e.is_file(follow_symlinks=False))

    def delete(self, remote_name):
        os.unlink(self._path(remote_name))


# The conformance suite's entry (tests/test_upload_conformance.py): how
# this module meets its test remote. What it can do is Remote.capabilities.
CONFORMANCE = {
    "local": {
        "server": None,                         # no server: a directory of the test's
        "files": "{tmp}/mnt/nas",               # where the uploaded files land
        "settings": {"LOCAL_DIR": "{files}"},
        "digest": "sha256",                     # what checksum() gives
    },
}
