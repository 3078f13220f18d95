"""Temporary names, and the sweeping of what a killed run left.

- ``.packrat-tmp-PID-NAME``: every temporary name a run makes beside final
  names (a dump being written, dar slices, restore's and download's
  working directories). The leading dot keeps it out of every purge and
  listing; the PID lets the next run sweep what a killed run left.
- ``NAME.partial``: the remote copy of an upload until it is verified and
  renamed (transfer.upload); the purge removes this host's stale ones.
- ``packrat-PID-XXXX`` in /dev/shm (or the temporary directory): a run's
  private directory for the secret files that cannot be memory files.

``sweep_stale`` removes the first and the last kind when their run is gone.
"""
import os
import re
import shutil
import stat
import tempfile

from pypackrat import log

TEMP_PREFIX = ".packrat-tmp-"
PARTIAL = ".partial"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"([0-9]+)-.")
_PRIVATE_NAME = re.compile(r"packrat-([0-9]+)-[A-Za-z0-9_]+\Z")


def temporary_name(name):
    """``.packrat-tmp-PID-NAME``, for ``name`` made by this process."""
    return "%s%d-%s" % (TEMP_PREFIX, os.getpid(), name)


def is_temporary(name):
    return os.path.basename(name).startswith(TEMP_PREFIX)


def partial_name(name):
    """The name an upload of ``name`` has on the remote until it is verified."""
    return name + PARTIAL


def partial_of(name):
    """The final name of an upload's temporary copy ``name``; None when
    ``name`` is not one."""
    if name.endswith(PARTIAL) and len(name) > len(PARTIAL):
        return name[: -len(PARTIAL)]
    return None


def is_transient(name):
    """A name no listing shows as a backup: a temporary of a run, or an
    upload's temporary copy."""
    return is_temporary(name) or partial_of(name) is not None


def private_prefix():
    """The prefix of this run's private directory (``packrat-PID-``)."""
    return "packrat-%d-" % os.getpid()


def private_bases():
    """Where private directories go: /dev/shm (memory) when writable, then
    the temporary directory."""
    bases = []
    if os.access("/dev/shm", os.W_OK):
        bases.append("/dev/shm")
    bases.append(tempfile.gettempdir())
    return bases


# -- what a killed run left behind ---------------------------------------------------

def _started_at(pid):
    """When process ``pid`` started (seconds since the epoch), None if it
    does not exist; 0 if it exists but its start is not known."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            boot = next(int(l.split()[1]) for l in fh if l.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, IndexError, StopIteration):
        return 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _is_stale(pid, st):
    """True when the run ``pid`` that made the entry ``st`` is gone: no such
    process, or a process that is not packrat and started after the entry
    last changed (the PID was reused, e.g. after a reboot; ctime, which no
    program can set back). Our own PID: entries older than this process
    (this run's own private directory is younger: never)."""
    started = _started_at(pid)
    if started is None:
        return True
    if pid != os.getpid() and b"packrat" in _cmdline(pid):
        return False
    return bool(started) and st.st_ctime < started - 2


def _remove_entry(name, st, dir_fd, where):
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warn("Cannot remove %s, left by a run that died: %s" % (os.path.join(where, name), exc))
        return
    log.verbose("Removed %s, left by a run that died" % os.path.join(where, name))


def sweep_stale(*directories):
    """Remove what runs that died (SIGKILL, power loss) left behind: every
    ``.packrat-tmp-PID-*`` file or directory at any level of each of
    ``directories`` (BACKUP_DIR), and the private directories
    ``packrat-PID-*`` in /dev/shm and the temporary directory, whose run
    PID is gone. Safe in shared places: only names of that pattern, only
    entries owned by packrat's user, never through a symbolic link (lstat,
    descriptors relative to each directory), never a live run's."""
    uid = os.geteuid()
    for top in directories:
        top = os.fspath(top)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for where, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
            for name in list(dirs) + files:
                m = _TEMP_NAME.match(name)
                if not m:
                    continue
                try:
                    st = os.lstat(name, dir_fd=dir_fd)
                except OSError:
                    continue
                if name in dirs:
                    dirs.remove(name)  # not walked into: removed whole or left alone
                if stat.S_ISLNK(st.st_mode) or st.st_uid != uid:
                    continue
                if _is_stale(int(m.group(1)), st):
                    _remove_entry(name, st, dir_fd, where)
    for base in private_bases():
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            m = _PRIVATE_NAME.match(name)
            if not m:
                continue
            path = os.path.join(base, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            if _is_stale(int(m.group(1)), st):
                try:
                    dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                try:
                    _remove_entry(name, st, dir_fd, base)
                finally:
                    os.close(dir_fd)
