"""The nightly run, top to bottom, in the original's order:

1. purge local archives older than PURGE_LOCAL_ARCHIVES days;
2. purge remote archives older than PURGE_REMOTE_ARCHIVES days;
3. stop here with -P;
4. run the backup modules (or, with -U DATE, take that date's files);
5. run the upload modules, each sending every new file of this run.

A failing step is reported and the run goes on with the steps that do not
depend on it (a broken database does not stop the filesystem backup from
going offsite); at the end every failure goes into one mail and the exit
status is 1.
"""
import contextlib
import fcntl
import os

from pypackrat import execute, log, mail, modules, retention, transfer
from pypackrat.errors import LockedError, PackratError

EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later


# -- one run at a time ----------------------------------------------------

@contextlib.contextmanager
def lock(path):
    """Hold an flock on ``path`` for the whole run. The kernel drops it when
    the process dies, so a killed run never blocks the next one."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
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


# -- purge ------------------------------------------------------------------

def purge_local(ctx, days):
    """Delete the dated files under BACKUP_DIR older than ``days``. A name
    without a date is never touched; symbolic links are neither deleted nor
    followed; nothing outside BACKUP_DIR is looked at, nor the working
    directories (.packrat-tmp-*) of a restore or verify that may be running."""
    top = ctx.backup_dir
    if not os.path.isdir(top):
        log.verbose("Purging: %s does not exist yet" % top)
        return
    log.verbose("Purging local archives older than %d days in %s" % (days, top))
    keep_chains = ctx.settings["PURGE_KEEP_CHAINS"]
    for directory, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(execute.TEMP_PREFIX)]
        names = [f for f in files if not os.path.islink(os.path.join(directory, f))]
        for name in retention.plan(names, days, ctx.now, keep_chains):
            path = os.path.join(directory, name)
            if ctx.dry_run:
                log.info("[dry run] would delete %s" % path)
                continue
            log.verbose("Deleting %s" % path)
            os.unlink(path)


def remote_candidates(ctx, names):
    """The names of a remote listing that a purge may consider: plain file
    names, and (unless PURGE_REMOTE_ALL_HOSTS) only this host's."""
    prefix = ctx.hostname + "-"
    out = []
    for name in names:
        if not transfer.safe_name(name):
            log.verbose("Purging: ignoring remote entry %r (not a plain file name)" % name)
            continue
        if not ctx.settings["PURGE_REMOTE_ALL_HOSTS"] and not name.startswith(prefix):
            continue
        out.append(name)
    return out


def purge_remote(ctx, name, days):
    resolved = modules.resolve(ctx.settings, name, "upload")
    with open_remote(ctx, resolved) as remote:
        log.verbose("Purging remote archives older than %d days on %s" % (days, remote.describe()))
        names = remote_candidates(ctx, transfer.listing(remote))
        victims = retention.plan(names, days, ctx.now, ctx.settings["PURGE_KEEP_CHAINS"])
        for victim in victims:
            log.verbose("Deleting %s from %s" % (victim, remote.describe()))
        transfer.delete_many(remote, victims)  # one connection, batched where the transport can


# -- backup and upload ----------------------------------------------------------

def open_remote(ctx, resolved):
    if resolved.kind == "python":
        return resolved.python().Remote(ctx)
    from pypackrat import shim
    return shim.BashRemote(ctx, resolved.name, resolved.where)


def backup(ctx, name):
    resolved = modules.resolve(ctx.settings, name, "backup")
    log.verbose("Running %s" % resolved.describe())
    if resolved.kind == "python":
        made = resolved.python().backup(ctx)
    else:
        from pypackrat import shim
        made = shim.backup(ctx, name, resolved.where)
    return [str(p) for p in made]


def upload(ctx, name, files):
    resolved = modules.resolve(ctx.settings, name, "upload")
    log.verbose("Running %s" % resolved.describe())
    if resolved.kind == "bash":
        from pypackrat import shim
        return shim.upload(ctx, name, resolved.where, files)
    with open_remote(ctx, resolved) as remote:
        for path in files:
            transfer.upload(remote, path)


def files_of_date(ctx, date):
    """-U DATE: every file in BACKUP_DIR whose name contains that date."""
    top = ctx.backup_dir
    if not os.path.isdir(top):
        raise PackratError("BACKUP_DIR %s does not exist" % top)
    found = sorted(os.path.join(top, e.name) for e in os.scandir(top)
                   if e.is_file(follow_symlinks=False) and date in e.name
                   and not e.name.startswith(".packrat-tmp-"))
    if not found:
        log.warn("No file in %s has %s in its name: nothing to upload" % (top, date))
    return found


def _step(errors, what, function, *args):
    result = None
    try:
        return function(*args)
    except PackratError as exc:
        message = str(exc)
        result = getattr(exc, "made", None)  # PartialFailure: what was made is still uploaded
    except Exception as exc:  # a bug or an unexpected library error: one line, not a traceback
        message = "%s: %s: %s" % (what, type(exc).__name__, exc)
        if os.environ.get("PACKRAT_DEBUG"):
            import traceback
            traceback.print_exc()
    message = log.mask(message)
    log.error(message)
    errors.append(message)
    return result


def nightly(ctx):
    """The run. Returns the list of failure messages (empty: success)."""
    settings, options = ctx.settings, ctx.options
    errors = []
    if not ctx.dry_run and not os.path.isdir(ctx.backup_dir):
        os.makedirs(ctx.backup_dir, mode=0o700, exist_ok=True)

    # 1, 2: purge, local then remote
    _step(errors, "purge local", purge_local, ctx, settings["PURGE_LOCAL_ARCHIVES"])
    for name in settings["UPLOAD_MODULES"]:
        _step(errors, "purge %s" % name, purge_remote, ctx, name, settings["PURGE_REMOTE_ARCHIVES"])
    # 3: -P stops here
    if options.purge_only:
        return errors

    # 4: backups (or the files of -U DATE)
    if options.upload_date:
        new = _step(errors, "-U", files_of_date, ctx, options.upload_date) or []
    else:
        new = []
        for name in settings["BACKUP_MODULES"]:
            made = _step(errors, "backup %s" % name, backup, ctx, name)
            new += made or []
            ctx.new_backups = list(new)

    # 5: uploads, each sending every new file of this run
    if new:
        for name in settings["UPLOAD_MODULES"]:
            _step(errors, "upload %s" % name, upload, ctx, name, new)
    return errors


def report(ctx, errors):
    """Mail the failures once (subject "Packrat: Error"); return the exit code."""
    if not errors:
        return 0
    mail.failure(ctx.settings, errors)
    return 1
