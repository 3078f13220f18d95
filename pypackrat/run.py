"""The nightly run, top to bottom, in the original's order:

1. purge local archives older than PURGE_LOCAL_ARCHIVES days;
2. purge remote archives older than PURGE_REMOTE_ARCHIVES days;
3. stop here with -P;
4. run the backup modules (or, with -U DATE, take that date's files);
5. meanwhile, each upload module sends every new file of this run as soon
   as it is made (Uploads; a Bash upload module gets them all after the
   backups, its contract).

A failing step is reported and the run goes on with the steps that do not
depend on it (a broken database does not stop the filesystem backup from
going offsite); at the end every failure goes into one mail and the exit
status is 1.
"""
import contextlib
import errno
import fcntl
import os
import queue
import stat
import threading
import time

from pypackrat import config, log, mail, monitor, plugins, retention, transfer
from pypackrat.core import temp
from pypackrat.core.growing import Abandoned, Growing
from pypackrat.core.names import archive_prefix
from pypackrat.errors import LockedError, PackratError

EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later


# -- one run at a time ----------------------------------------------------

DEFAULT_LOCK_FILE = "/run/packrat/packrat.lock"


def _refuse(path, why):
    """One line naming the file, the reason and the fix (cli.py prefixes
    "cannot take the lock PATH: "). The lock file itself holds no data; its
    directory may hold anything: it is never offered for removal."""
    fix = "" if why.startswith("(the lock's directory)") else "remove it (it holds no data), or "
    return OSError("%s %s; %skeep LOCK_FILE in a directory only root can write, as the default %s"
                   % (path, why, fix, DEFAULT_LOCK_FILE))


@contextlib.contextmanager
def lock(path):
    """Hold an flock on ``path`` for the whole run. The kernel drops it when
    the process dies, so a killed run never blocks the next one.

    The file is never reached through a symbolic link (O_NOFOLLOW, and its
    directory opened with O_NOFOLLOW too), and is refused unless it is a
    plain file with one link owned by root (by the invoking user when not
    root): a link or a file another user planted, or one another user holds
    open, would let that user truncate root's files or stop every backup.
    A missing directory is created 0700; an existing one must be owned by
    root (or the invoking user) and not writable by others unless sticky
    (/run/lock). The file is 0600: nobody else can open it to hold it."""
    uid = os.geteuid()
    path = os.path.abspath(path)
    directory, base = os.path.split(path)
    made_dir = False
    if not os.path.lexists(directory):
        try:
            os.makedirs(directory, mode=0o700)
            made_dir = True
        except FileExistsError:
            pass
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(directory, "(the lock's directory) is a symbolic link or not a directory")
        raise
    try:
        st = os.fstat(dfd)
        if made_dir:
            os.fchmod(dfd, 0o700)
        else:
            if st.st_uid not in (0, uid):
                raise _refuse(directory, "(the lock's directory) is owned by %s, not by %s"
                              % (config.owner_name(st.st_uid), config.invoker()))
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise _refuse(directory, "(the lock's directory) is writable by other users "
                              "(mode %04o)" % stat.S_IMODE(st.st_mode))
        fd = _open_lock_file(path, base, dfd)
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "is not a plain file")
        if st.st_uid != uid:
            raise _refuse(path, "is owned by %s, not by %s: another user may have planted it"
                          % (config.owner_name(st.st_uid), config.invoker()))
        if st.st_nlink != 1:
            raise _refuse(path, "has %d hard links (another name may lead to a file of root's)"
                          % st.st_nlink)
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)  # an older packrat made it 0644: nobody else may open it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LockedError("another packrat run (pid %s) holds the lock %s; not starting"
                              % (holder, path))
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        yield
    finally:
        os.close(fd)


def _open_lock_file(path, base, dfd):
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    for _ in range(3):
        try:
            return os.open(base, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
        except FileExistsError:
            pass
        try:
            return os.open(base, flags, dir_fd=dfd)
        except FileNotFoundError:
            continue  # removed in between: create it again
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(path, "is a symbolic link: another user may have planted it")
            if exc.errno in (errno.EACCES, errno.EPERM):
                st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
                raise _refuse(path, "is owned by %s, not by %s, and cannot be opened"
                              % (config.owner_name(st.st_uid), config.invoker()))
            raise
    raise _refuse(path, "keeps disappearing and reappearing")


def owner(ctx, remote=False):
    """Which names are this host's archives (retention.Owner): its
    FS_TARGETS' dar prefixes, its dumps (host matched exactly), the
    ``HOST-MODULE-`` names of its Bash backup modules, and PURGE_PATTERNS;
    of any host on a remote with PURGE_REMOTE_ALL_HOSTS."""
    settings, host = ctx.settings, ctx.hostname
    prefixes = [archive_prefix(host, t) for t in settings["FS_TARGETS"]]
    resolved = [(m, plugins.resolve(settings, m, "backup")) for m in settings["BACKUP_MODULES"]]
    bash = [m for m, module in resolved if module is None or module.owns_names()]
    return retention.Owner(host, prefixes, bash, settings["PURGE_PATTERNS"],
                           any_host=remote and settings["PURGE_REMOTE_ALL_HOSTS"])


def _local_places(top_fd, top, recursive):
    """(directory fd, directory path, [plain file names]) of BACKUP_DIR and,
    when ``recursive``, of its subdirectories (never through a symbolic link,
    never a directory whose name starts with a dot, as .packrat-tmp-*)."""
    stack = [(os.dup(top_fd), top)]
    try:
        while stack:
            fd, path = stack.pop()
            try:
                names = []
                for entry in os.scandir(fd):
                    if entry.is_dir(follow_symlinks=False):
                        if recursive and not entry.name.startswith("."):
                            try:
                                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                              | os.O_CLOEXEC, dir_fd=fd)
                            except OSError:
                                continue
                            stack.append((sub, os.path.join(path, entry.name)))
                    elif entry.is_file(follow_symlinks=False):
                        names.append(entry.name)
                yield fd, path, names
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:  # left when the caller stops early
            os.close(fd)


def purge_local(ctx, days):
    """Delete this host's archives in BACKUP_DIR older than ``days`` (only
    names ``owner()`` accepts: another tool's or a photo's dated name is
    never touched), keeping each target's newest chain and each database's
    newest dump. A name without a date is never touched; symbolic links are
    neither deleted nor followed; subdirectories only with
    PURGE_LOCAL_RECURSIVE, never the working directories (.packrat-tmp-*)
    of a restore or verify that may be running."""
    top = ctx.backup_dir
    if not os.path.isdir(top):
        log.verbose("Purging: %s does not exist yet" % top)
        return
    log.verbose("Purging local archives older than %d days in %s" % (days, top))
    keep_chains = ctx.settings["PURGE_KEEP_CHAINS"]
    mine = owner(ctx)
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for fd, directory, names in _local_places(top_fd, top, ctx.settings["PURGE_LOCAL_RECURSIVE"]):
            own = mine.filter(names)
            counts = retention.Counts.of(ctx.settings)
            why = {} if counts else None
            victims = retention.plan(own, days, ctx.now, keep_chains,
                                     whole_chain=ctx.settings["FS_INCREMENTAL"], counts=counts, why=why)
            log_kept(ctx, why, directory)
            for name in victims:
                path = os.path.join(directory, name)
                if ctx.dry_run:
                    log.info("[dry run] would delete %s" % path)
                    continue
                log.verbose("Deleting %s" % path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
    finally:
        os.close(top_fd)


def log_kept(ctx, why, where):
    """With the count rules on (PURGE_KEEP_DAILY, _WEEKLY, _MONTHLY): the
    names a count rule keeps, with every rule that keeps them (retention.plan's
    ``why``); shown by -n, and with -v."""
    for name in sorted(why or ()):
        if any(map(retention.is_count_reason, why[name])):
            line = "keeps %s in %s: %s" % (name, where, "; ".join(why[name]))
            if ctx.dry_run:
                log.info("[dry run] purge " + line)
            else:
                log.verbose("Purge " + line)


def remote_candidates(ctx, names, mine=None):
    """The names of a remote listing that a purge may consider: plain file
    names that are this host's archives (``owner()``; of any host with
    PURGE_REMOTE_ALL_HOSTS)."""
    mine = mine or owner(ctx, remote=True)
    out = []
    for name in names:
        if not transfer.safe_name(name):
            log.verbose("Purging: ignoring remote entry %r (not a plain file name)" % name)
            continue
        if mine(name):
            out.append(name)
    return out


class Unreachable(PackratError):
    """A remote could not be connected to (after the retries)."""


@contextlib.contextmanager
def connected(ctx, module):
    """``module.remote(ctx)`` entered; a failed connection raises Unreachable."""
    remote = module.remote(ctx)
    try:
        remote.__enter__()
    except PackratError as exc:
        raise Unreachable(str(exc)) from None
    try:
        yield remote
    finally:
        remote.__exit__(None, None, None)


def purge_remote(ctx, name, days, keep=None):
    """Purge upload module ``name``'s remote. ``keep``: a function that
    takes the connection once the purge is done (``keep(remote, closer)``,
    closer an ExitStack that closes it): the module's upload worker sends
    the night's files over it, one connection per module and run."""
    module = plugins.resolve(ctx.settings, name, "upload")
    with contextlib.ExitStack() as connection:
        remote = connection.enter_context(connected(ctx, module))
        log.verbose("Purging remote archives older than %d days on %s" % (days, remote.describe()))
        mine = owner(ctx, remote=True)
        listed = transfer.listing(remote)
        leftovers = stale_partials(ctx, listed)
        names = remote_candidates(ctx, listed, mine)
        foreign = remote.foreign(names)
        if foreign:
            log.verbose("Purging: %d file(s) named as this host's on %s belong to another user: "
                        "neither deleted nor taken as a backup (planted?)"
                        % (len(foreign), remote.describe()))
            names = [n for n in names if n not in foreign]
        counts = retention.Counts.of(ctx.settings)
        why = {} if counts else None
        victims = retention.plan(names, days, ctx.now, ctx.settings["PURGE_KEEP_CHAINS"],
                                 whole_chain=ctx.settings["FS_INCREMENTAL"], counts=counts, why=why)
        log_kept(ctx, why, remote.describe())
        for leftover in leftovers:
            log.verbose("Deleting %s from %s (the temporary copy of an upload that was killed)"
                        % (leftover, remote.describe()))
        for victim in victims:
            log.verbose("Deleting %s from %s" % (victim, remote.describe()))
        transfer.delete_many(remote, leftovers + victims)  # one connection, batched where it can
        if keep is not None:
            keep(remote, connection.pop_all())


def stale_partials(ctx, names):
    """The temporary copies (``NAME.partial``) that an upload of this host
    left on a remote when it was killed: ``NAME`` is one of this host's
    archive names (never another host's, even with PURGE_REMOTE_ALL_HOSTS:
    its upload may be running now). This run holds the lock, so no upload
    of this host is under way."""
    mine = owner(ctx)  # this host only
    return [name for name in names if transfer.safe_name(name) and mine(temp.partial_of(name) or "")]


# -- backup and upload ----------------------------------------------------------

def open_remote(ctx, module):
    """The Remote of upload module ``module`` (plugins.resolve), not yet open."""
    return module.remote(ctx)


def backup(ctx, name):
    module = plugins.resolve(ctx.settings, name, "backup")
    log.verbose("Running %s" % module.describe())
    record = monitor.record_of(ctx)
    record.event("backup started", name)
    try:
        with record.step("backup", name) as step:  # its files and time, for the reports
            made = module.backup(ctx)
            step.files = list(made or [])
    finally:
        record.event("backup ended", name)
    return made


def upload(ctx, name, files):
    module = plugins.resolve(ctx.settings, name, "upload")
    log.verbose("Running %s" % module.describe())
    record = monitor.record_of(ctx)
    record.event("upload started", name)
    try:
        with record.step("upload", name) as step:
            step.files = list(files)
            module.upload(ctx, files)
    finally:
        record.event("upload ended", name)


def files_of_date(ctx, date):
    """-U DATE: every file in BACKUP_DIR whose name contains that date."""
    top = ctx.backup_dir
    if not os.path.isdir(top):
        raise PackratError("BACKUP_DIR %s does not exist" % top)
    found = sorted(os.path.join(top, e.name) for e in os.scandir(top)
                   if e.is_file(follow_symlinks=False) and date in e.name
                   and not temp.is_temporary(e.name))
    if not found:
        log.warn("No file in %s has %s in its name: nothing to upload" % (top, date))
    return found


def _attempt(what, function, *args):
    """Run one step: (result, failure message or None, the exception)."""
    result = None
    try:
        return function(*args), None, None
    except PackratError as exc:
        message = str(exc)
        result = getattr(exc, "made", None)  # PartialFailure: what was made is still uploaded
        error = exc
    except Exception as exc:  # a bug or an unexpected library error: one line, not a traceback
        message = "%s: %s: %s" % (what, type(exc).__name__, exc)
        error = exc
        if os.environ.get("PACKRAT_DEBUG"):
            import traceback
            traceback.print_exc()
    return result, log.mask(message), error


def _fail(errors, message):
    message = log.mask(message)
    log.error(message)
    errors.append(message)


def _step(errors, what, function, *args):
    result, message, _ = _attempt(what, function, *args)
    if message:
        _fail(errors, message)
    return result


def _capabilities(ctx, name):
    """The capabilities of upload module ``name``'s remote (none where it
    cannot be resolved: it fails in upload(), as before)."""
    try:
        module = plugins.resolve(ctx.settings, name, "upload")
        return module.remote(ctx).capabilities if module is not None else frozenset()
    except Exception:
        return frozenset()


# while an upload worker waits (for the next file, or for its turn), its
# connection gets a keep-alive this often: an idle FTP session is closed by
# its server after a few minutes (vsftpd: 300 s), an idle SSH connection by
# a firewall's NAT table, while a long backup runs
KEEPALIVE = 60


class _Worker:
    """One streaming upload module for the night: a thread that sends the
    files of its queue in the order they came, over one connection: the
    purge's (adopt()), or one opened at its first file; kept to the end,
    and kept alive while the backups run. After a failed file it sends no
    more (as the one-after-another order did); its failure is reported at
    the end of the run with the others."""

    def __init__(self, uploads, name):
        self.uploads, self.name = uploads, name
        self.queue = queue.SimpleQueue()
        self.files = []          # every file given, in order
        self.message = self.error = None
        self.step = None         # monitor.Step, once it has a file
        self.adopted = None      # (remote, its closer): the purge's connection
        self.finishing = []      # threads finishing streamed archives (transfer.upload_growing)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="packrat-upload-%s" % name, daemon=True)

    def adopt(self, remote, closer):
        """The purge's open connection, for this worker's files (before start())."""
        self.adopted = (remote, closer)

    def give(self, path):
        self.files.append(path)
        self.queue.put(path)

    @staticmethod
    def _keepalive(remote):
        if remote is None:
            return
        try:
            remote.keepalive()
        except Exception as exc:  # the next upload reconnects (transfer's retries)
            log.verbose("%s: keep-alive failed: %s" % (remote.describe(), exc))

    def _next(self, remote):
        """The next file of the queue (None: the end), the connection kept alive meanwhile."""
        while True:
            try:
                return self.queue.get(timeout=KEEPALIVE)
            except queue.Empty:
                self._keepalive(remote)

    def _turn(self, remote):
        """Wait for one of the UPLOAD_CONCURRENCY slots, keeping the connection alive."""
        while not self.uploads.slots.acquire(timeout=KEEPALIVE):
            self._keepalive(remote)

    def close(self):
        self.queue.put(None)

    def _run(self):
        try:
            with contextlib.ExitStack() as connection:
                try:
                    self._send(connection)
                finally:  # before the connection closes
                    for thread in self.finishing:
                        thread.join()
        except transfer.Cancelled:
            pass
        except BaseException as exc:  # never a thread that dies unheard
            self.message = log.mask("upload %s: %s: %s" % (self.name, type(exc).__name__, exc))
            self.error = exc

    def _send(self, connection):
        ctx, cancel = self.uploads.ctx, self.uploads.cancel
        record = monitor.record_of(ctx)
        module = plugins.resolve(ctx.settings, self.name, "upload")
        remote = None
        if self.adopted is not None:
            remote, closer = self.adopted
            self.adopted = None
            connection.enter_context(closer)
        while True:
            path = self._next(None if self.message else remote)
            if path is None or cancel.is_set():
                return
            if self.message:
                continue  # failed: the rest is not sent
            self._turn(remote)
            try:  # at most UPLOAD_CONCURRENCY modules send at once
                if cancel.is_set():
                    return
                started = time.time()
                if self.step is None:
                    log.verbose("Running %s" % module.describe())
                    self.step = monitor.Step("upload", self.name)
                try:
                    if remote is None:
                        remote, self.message, self.error = _attempt(
                            "upload %s" % self.name, connection.enter_context, connected(ctx, module))
                        if self.message:
                            continue
                    if isinstance(path, Growing):
                        self._growing(remote, path)
                        continue
                    record.event("upload started", self.name, path)
                    _, message, error = _attempt("upload %s" % self.name, transfer.upload, remote, path, cancel)
                    record.event("upload failed" if message else "upload ended", self.name, path)
                    self._failed(message, error)
                finally:
                    self.step.seconds += time.time() - started
            finally:
                self.uploads.slots.release()


    def _growing(self, remote, growing):
        """An archive sent while dar writes it (transfer.upload_growing);
        when dar fails, what was sent of it is removed, and this module
        goes on with the next file (the failure is the backup's)."""
        record = monitor.record_of(self.uploads.ctx)
        _, message, error = _attempt("upload %s" % self.name, transfer.upload_growing, remote, growing,
                                     self.uploads.cancel,
                                     lambda what, path: record.event(what, self.name, path),
                                     lambda finish: self._defer(finish, growing))
        if isinstance(error, Abandoned):
            log.verbose("%s: %s was not made (dar failed): what was sent of it is removed"
                        % (remote.describe(), growing.base))
            return
        self._failed(message, error, growing)

    def _failed(self, message, error, growing=None):
        """Note this module's failure (the first only: a streamed archive's
        finishing thread may fail while the worker sends another file)."""
        with self.lock:
            if not message or self.message:
                return
            self.message, self.error = message, error
        if growing is not None:
            monitor.record_of(self.uploads.ctx).event("upload failed", self.name, growing.final_path(1))

    def _defer(self, finish, growing):
        """Finish a streamed archive in a thread of its own (a "threadsafe"
        remote), while this worker sends its next file; joined before the
        worker ends. Its failure is this module's, as any upload's."""
        def run():
            try:
                _, message, error = _attempt("upload %s" % self.name, finish)
            except transfer.Cancelled:
                return
            self._failed(message, error, growing)
        thread = threading.Thread(target=run, name="packrat-finish-%s" % self.name, daemon=True)
        self.finishing.append(thread)
        thread.start()


class Uploads:
    """The night's uploads, overlapping the backups.

    Each upload module whose remote moves the bytes itself (the Python
    modules) gets a worker thread (_Worker): every file a backup module
    hands over (add(): ctx.made as each archive or dump gets its final
    name, or the module's list when it returns) goes to every worker at
    once, and the backups go on. At most UPLOAD_CONCURRENCY workers send at
    the same moment. The other upload modules (Bash: NEW_BACKUPS is their
    contract) get the whole list after the backups, one after another, as
    before; so does every module with UPLOAD_CONCURRENCY=0, the original's
    order. stop() (SIGTERM) stops the workers between files and in a
    transfer, its temporary copy removed."""

    def __init__(self, ctx):
        self.ctx = ctx
        names = list(ctx.settings["UPLOAD_MODULES"])
        limit = int(ctx.settings.get("UPLOAD_CONCURRENCY", 2) or 0)
        self.files, self._seen = [], set()
        self.growing = []  # archives given to the workers while dar wrote them
        self.cancel = threading.Event()
        self.limit = max(limit, 1)
        self.slots = threading.BoundedSemaphore(self.limit)
        # (name, _Worker or None) in UPLOAD_MODULES order. A worker takes its
        # files one at a time, as they are made, where the remote moves the
        # bytes itself ("transfer": the Python modules); None: after the
        # backups (a Bash upload module's contract: NEW_BACKUPS at once)
        capabilities = {n: _capabilities(ctx, n) for n in names}
        self.modules = [(n, _Worker(self, n) if limit and "transfer" in capabilities[n] else None)
                        for n in names]
        self.networked = {n for n in names if "reconnect" in capabilities[n]}
        self.streams = {n: "stream" in capabilities[n] for n in names}
        self.workers = [w for _, w in self.modules if w is not None]
        self.done = {}  # name -> (message, exception) of a module that ran after the backups

    def plan(self):
        """The plan's lines, for -n."""
        lines = []
        now = [n for n, w in self.modules if w is not None]
        later = [n for n, w in self.modules if w is None]
        if now:
            lines.append("uploads: %s send%s each file as soon as it is made, while the backups go on "
                         "(at most %d module%s at once)"
                         % (", ".join(now), "s" if len(now) == 1 else "", self.limit,
                            "" if self.limit == 1 else "s"))
        streaming = [n for n in now if self.streams.get(n)]
        if streaming and "filesystem" in self.ctx.settings["BACKUP_MODULES"]:
            lines.append("uploads: %s send%s each archive while dar writes it (dar -c - | dar_xform), "
                         "under a temporary name until dar has succeeded"
                         % (", ".join(streaming), "s" if len(streaming) == 1 else ""))
        if later:
            lines.append("uploads: %s get%s every new file after the backups, one module after another"
                         % (", ".join(later), "s" if len(later) == 1 else ""))
        return lines

    def keeper(self, name):
        """Where the purge of module ``name`` leaves its open connection:
        its worker's adopt(), where the remote holds a network connection
        (the "reconnect" capability: ssh, ftp, s3; a local directory is
        looked at again by its upload); None for a module without a worker
        (its upload comes after the backups, over a connection of its own)."""
        worker = dict(self.modules).get(name)
        if worker is None or name not in self.networked:
            return None
        return worker.adopt

    def start(self):
        for worker in self.workers:
            worker.thread.start()

    def add(self, path):
        """A new file of the run: to every worker at once (each file once;
        not to the workers that have it already as a growing archive)."""
        path = str(path)
        if path in self._seen:
            return
        self._seen.add(path)
        self.files.append(path)
        self.ctx.new_backups = list(self.files)
        monitor.record_of(self.ctx).event("made", None, path)
        if any(growing.owns(path) for growing in self.growing):
            return
        for worker in self.workers:
            worker.give(path)

    def add_growing(self, growing):
        """An archive dar has begun (core.growing): to every worker now; its
        slices are sent while they are written where the remote can."""
        self.growing.append(growing)
        for worker in self.workers:
            worker.give(growing)

    def finish(self):
        """After the backups: the workers get their last file, the other
        modules run (one after another, with every new file), the workers
        end; their steps go to the record, in UPLOAD_MODULES order."""
        for worker in self.workers:
            worker.close()
        for name, worker in self.modules:
            if worker is None and self.files:
                _, message, exc = _attempt("upload %s" % name, upload, self.ctx, name, self.files)
                self.done[name] = (message, exc)
        for worker in self.workers:
            worker.thread.join()
        record = monitor.record_of(self.ctx)
        for worker in self.workers:
            if worker.step is not None:
                worker.step.files = [p for item in worker.files for p in
                                     ([f for f in self.files if item.owns(f)] if isinstance(item, Growing)
                                      else [item])]
                worker.step.ok = worker.message is None
                record.steps.append(worker.step)
        order = {name: i for i, (name, _) in reversed(list(enumerate(self.modules)))}
        record.steps.sort(key=lambda s: (s.kind == "upload", order.get(s.module, 0) if s.kind == "upload" else 0))

    def outcome(self, name, worker):
        """(message, exception) of module ``name``; None when it had no file."""
        if worker is None:
            return self.done.get(name)
        if not worker.files:
            return None
        return worker.message, worker.error

    def stop(self, wait=60):
        """SIGTERM: no new file, the transfers under way stopped (their
        programs too), their temporary copies removed; wait for the workers."""
        self.cancel.set()
        for worker in self.workers:
            worker.close()
        _stop_programs(w.thread for w in self.workers)
        deadline = time.monotonic() + wait
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()))


def _stop_programs(threads):
    """Stop what the threads ``threads`` started and still wait for (scp,
    rsync), each with its process group: the kernel lists a thread's
    children in /proc/self/task/TID/children."""
    import signal
    for thread in threads:
        if not thread.is_alive() or thread.native_id is None:
            continue
        try:
            with open("/proc/self/task/%d/children" % thread.native_id) as fh:
                pids = [int(p) for p in fh.read().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGTERM)


def nightly(ctx):
    """The run. Returns the list of failure messages (empty: success).

    One failure, one message: when a remote cannot be connected to for the
    purge, its upload is still tried (the remote may be back), and the run
    reports that remote once: the upload's message if it fails to connect
    too, the purge's otherwise."""
    settings, options = ctx.settings, ctx.options
    errors = []
    if not ctx.dry_run and not os.path.isdir(ctx.backup_dir):
        try:
            os.makedirs(ctx.backup_dir, mode=0o700, exist_ok=True)
        except OSError as exc:  # nothing can be made nor purged: one line, mailed
            _fail(errors, "%s: BACKUP_DIR=%s cannot be created: %s"
                  % (settings.where("BACKUP_DIR"), ctx.backup_dir, exc.strerror or exc))
            return errors
    if not ctx.dry_run:  # what runs killed before their end left: .packrat-tmp-PID-*, private dirs
        temp.sweep_stale(ctx.backup_dir)

    # 1, 2: purge, local then remote; a module's upload worker keeps the
    # purge's connection (one connection per module and run)
    uploads = None if options.purge_only else Uploads(ctx)
    _step(errors, "purge local", purge_local, ctx, settings["PURGE_LOCAL_ARCHIVES"])
    unreachable = {}  # upload module -> its purge's connection failure, reported once below
    for name in settings["UPLOAD_MODULES"]:
        _, message, exc = _attempt("purge %s" % name, purge_remote, ctx, name,
                                   settings["PURGE_REMOTE_ARCHIVES"], uploads and uploads.keeper(name))
        if isinstance(exc, Unreachable) and not options.purge_only:
            unreachable[name] = message
            log.verbose("%s (no purge; the upload will try to connect again)" % message)
        elif message:
            _fail(errors, message)
    # 3: -P stops here
    if options.purge_only:
        return errors

    # 4, 5: backups (or the files of -U DATE); each new file goes to the
    # upload modules as soon as it is made (Uploads)
    uploads.start()
    try:
        if options.upload_date:
            for path in _step(errors, "-U", files_of_date, ctx, options.upload_date) or []:
                uploads.add(path)
        else:
            ctx.on_made = uploads.add
            if uploads.workers:  # an archive goes while dar writes it
                ctx.on_growing = uploads.add_growing
            try:
                for name in settings["BACKUP_MODULES"]:
                    made = _step(errors, "backup %s" % name, backup, ctx, name)
                    for path in made or []:  # what the module did not hand over itself
                        uploads.add(path)
            finally:
                ctx.on_made = ctx.on_growing = None
        uploads.finish()
    except BaseException:  # SIGTERM: the uploads stop too, their temporary copies removed
        uploads.stop()
        raise

    for name, worker in uploads.modules:
        purge_failure = unreachable.pop(name, None)
        outcome = uploads.outcome(name, worker)
        if outcome is None:
            if purge_failure:
                _fail(errors, purge_failure)
            continue
        message, exc = outcome
        if purge_failure is None:
            if message:
                _fail(errors, message)
        elif isinstance(exc, Unreachable):
            _fail(errors, "%s (neither the purge nor the upload of %s ran)" % (message, name))
        else:
            _fail(errors, "%s (no purge of %s in this run%s)"
                  % (purge_failure, name, "" if message else "; the upload went through"))
            if message:
                _fail(errors, message)
    return errors


def report(ctx, errors):
    """Mail the failures once (subject "Packrat: Error"), or the success
    report MAIL_ON asks for (mail.night); return the exit code."""
    mail.night(ctx, errors)
    return 1 if errors else 0
