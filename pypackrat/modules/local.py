"""Upload module ``local``: copy the archives into a directory, such as a
mounted NAS share (setting LOCAL_DIR). The reference implementation of the
upload interface."""
import hashlib
import os

from pypackrat.transfer import Remote as BaseRemote


def check(settings):
    directory = settings["LOCAL_DIR"]
    if not directory:
        return ["%s: LOCAL_DIR is empty, but the local upload module is enabled"
                % settings.where("LOCAL_DIR", "upload")]
    if not directory.startswith("/"):
        return ["%s: LOCAL_DIR=%r: must be an absolute path" % (settings.where("LOCAL_DIR", "upload"), directory)]
    return []


def requirements(settings):
    """LOCAL_DIR must be a directory now (a share not mounted tonight fails
    this upload only, at run time)."""
    directory = settings["LOCAL_DIR"]
    if not directory.startswith("/") or os.path.isdir(directory):
        return []
    what = "is not a directory" if os.path.lexists(directory) else "does not exist"
    return ["%s: LOCAL_DIR=%s %s (is the share mounted?): the local upload will fail"
            % (settings.where("LOCAL_DIR", "upload"), directory, what)]


class Remote(BaseRemote):
    name = "local"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.directory = self.settings["LOCAL_DIR"]

    def describe(self):
        return "local:%s" % self.directory

    def open(self):
        if not os.path.isdir(self.directory):
            raise OSError("LOCAL_DIR %s is not a directory (is the share mounted?)" % self.directory)

    def _path(self, name):
        return os.path.join(self.directory, name)

    def put(self, local_path, remote_name, progress=None):
        self._copy(local_path, self._path(remote_name), progress)

    def get(self, remote_name, local_path, progress=None):
        self._copy(self._path(remote_name), local_path, progress)

    @staticmethod
    def _copy(source, dest, progress):
        done = 0
        with open(source, "rb") as src, open(dest, "wb") as dst:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                dst.write(block)
                done += len(block)
                if progress:
                    progress(done)
            dst.flush()
            os.fsync(dst.fileno())

    def rename(self, old, new):
        os.replace(self._path(old), self._path(new))

    def size(self, remote_name):
        try:
            return os.path.getsize(self._path(remote_name))
        except FileNotFoundError:
            return None

    def checksum(self, remote_name):
        h = hashlib.sha256()
        with open(self._path(remote_name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return "sha256", h.hexdigest()

    def list(self):
        return sorted(e.name for e in os.scandir(self.directory) if e.is_file(follow_symlinks=False))

    def delete(self, remote_name):
        os.unlink(self._path(remote_name))
