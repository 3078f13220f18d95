"""What archives exist, and where: BACKUP_DIR and the upload modules'
remotes, seen as one catalog. Used by ``list``, ``restore`` and ``verify``.

Names are all we go by, as the original did: core.names says what a name
is (a dar slice of a master or an incremental, a database dump), and
core.chains which archives restore a day.
"""
import contextlib
import os
import re

from pypackrat import execute, log, transfer
from pypackrat.core import names, temp
from pypackrat.errors import PackratError

LOCAL = "BACKUP_DIR"  # the location name of BACKUP_DIR (an upload module may be "local")


def human(size):
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024


class Archive:
    """One dar archive (all its slices), wherever its slices are."""

    def __init__(self, parsed):
        self.base = parsed.archive        # as dar takes it: no slice, no .dar
        self.prefix = parsed.prefix
        self.day = parsed.day
        self.master = parsed.master
        self.slices = {}                  # slice number -> file name

    @property
    def kind(self):
        return "master" if self.master else "incremental"

    def names(self):
        return [self.slices[n] for n in sorted(self.slices)]

    def missing_slices(self):
        """Slice numbers absent between 1 and the highest one seen anywhere."""
        top = max(self.slices) if self.slices else 0
        return [n for n in range(1, top + 1) if n not in self.slices]

    def __repr__(self):
        return "<Archive %s>" % self.base


class Dump:
    """One database dump file (its name as the dump module reads it)."""

    def __init__(self, name, host, engine, db, day, suffix):
        self.name, self.host, self.engine, self.db = name, host, engine, db
        self.day, self.suffix = day, suffix

    def __repr__(self):
        return "<Dump %s>" % self.name


def own_files(directory, mine=lambda name: True):
    """{name: size} of the plain files in ``directory`` that ``mine(name)``
    takes and packrat's own user owns (root, at night). A backup's name on
    a file another user owns is planted (BACKUP_DIR open to others): never
    a reference master, a restore's source or a verified archive; said
    once, as a warning."""
    out = {}
    if not os.path.isdir(directory):
        return out
    me = os.geteuid()
    for entry in os.scandir(directory):
        if not entry.is_file(follow_symlinks=False) or not mine(entry.name):
            continue
        st = entry.stat(follow_symlinks=False)
        if st.st_uid == me:
            out[entry.name] = st.st_size
        elif names.parse_dar(entry.name) or parse_dump(entry.name):
            log.warn("Warning: %s is owned by uid %d, not by packrat's user: not taken as a backup"
                     % (os.path.join(directory, entry.name), st.st_uid))
    return out


def parse_dump(name):
    parsed = names.parse_dump_name(name)
    if parsed is None:
        return None
    host, engine, db, date, suffix = parsed
    day = names.day(date)
    return None if day is None else Dump(name, host, engine, db, day, suffix)


class Catalog:
    """Every file of one host, local and remote: ``files[name][location]``
    is the size there (None when unknown). ``locations`` is "local" then the
    upload modules in order; ``remotes[location]`` is the open Remote."""

    def __init__(self, host):
        self.host = host
        self.locations = []
        self.files = {}
        self.remotes = {}
        self.errors = []          # locations that could not be read
        self.directory = None     # BACKUP_DIR

    # -- gathering -------------------------------------------------------
    def mine(self, name):
        """A name of this host's (every host's when ``host`` is empty)."""
        return (not self.host or name.startswith(self.host + "-")) and not temp.is_transient(name)

    def add(self, location, name, size):
        if location not in self.locations:
            self.locations.append(location)
        self.files.setdefault(name, {})[location] = size

    def add_local(self, directory):
        self.directory = directory
        if LOCAL not in self.locations:
            self.locations.insert(0, LOCAL)
        for name, size in own_files(directory, self.mine).items():
            self.add(LOCAL, name, size)

    def add_remote(self, location, remote, sizes=True):
        found = {}
        for name in transfer.listing(remote):
            if transfer.safe_name(name) and self.mine(name) and \
                    (parse_dump(name) or names.parse_dar(name)):
                found[name] = _size(remote, name) if sizes else None
        for name in sorted(remote.foreign(list(found)) if found else ()):
            log.warn("Warning: %s: %s is owned by another account than packrat's: not taken as a backup"
                     % (remote.describe(), name))
            del found[name]
        self.remotes[location] = remote
        if location not in self.locations:
            self.locations.append(location)
        for name, size in found.items():
            self.add(location, name, size)

    # -- reading ---------------------------------------------------------
    def where(self, name):
        return [loc for loc in self.locations if loc in self.files.get(name, {})]

    def size(self, name, location):
        return self.files.get(name, {}).get(location)

    def local_path(self, name):
        if LOCAL in self.files.get(name, {}):
            return os.path.join(self.directory, name)
        return None

    def archives(self, location=None):
        """{base: Archive} of the dar archives (seen at ``location`` only,
        if given)."""
        out = {}
        for name, where in self.files.items():
            if location is not None and location not in where:
                continue
            parsed = names.parse_dar(name)
            if parsed is None:
                continue
            archive = out.get(parsed.archive)
            if archive is None:
                archive = out[parsed.archive] = Archive(parsed)
            archive.slices[parsed.slice] = name
        return out

    def prefixes(self):
        return sorted({a.prefix for a in self.archives().values()})

    def dumps(self, location=None):
        out = []
        for name, where in self.files.items():
            if location is not None and location not in where:
                continue
            dump = parse_dump(name)
            if dump is not None:
                out.append(dump)
        return sorted(out, key=lambda d: (d.engine, d.db, d.day, d.name))

    def newest_day(self, location=None, until=None):
        """The newest date of an archive or dump (at ``location``), dates
        after ``until`` left out."""
        days = [a.day for a in self.archives(location).values()] + \
               [d.day for d in self.dumps(location)]
        days = [d for d in days if until is None or d <= until]
        return max(days) if days else None

    def future(self, until):
        """The names dated after ``until``, sorted."""
        out = [a.base for a in self.archives().values() if a.day > until]
        out += [d.name for d in self.dumps() if d.day > until]
        return sorted(out)


def _size(remote, name):
    """The size of ``name`` on ``remote``; None where the remote only lists
    (a Bash module: no "transfer" capability)."""
    return remote.size(name) if "transfer" in remote.capabilities else None


# -- opening the remotes -------------------------------------------------------

def open_remote(ctx, name):
    """An open Remote of upload module ``name`` (caller closes it)."""
    from pypackrat import plugins
    module = plugins.require(ctx.settings, name, "upload")
    problems = module.check(ctx.settings)
    if problems:
        raise PackratError("; ".join(problems))
    remote = module.remote(ctx)
    remote.open()
    return remote


@contextlib.contextmanager
def gather(ctx, host=None, remotes=(), sizes=True, strict=False):
    """A Catalog of BACKUP_DIR and of each upload module in ``remotes``,
    with those remotes open for the block. A remote that cannot be read is
    noted in ``catalog.errors`` (or raised, with ``strict``)."""
    catalog = Catalog(ctx.hostname if host is None else host)
    catalog.add_local(ctx.backup_dir)
    opened = []
    try:
        for name in remotes:
            try:
                remote = open_remote(ctx, name)
            except Exception as exc:
                message = "%s: cannot connect: %s" % (name, log.mask(exc))
                if strict:
                    raise PackratError(message)
                catalog.errors.append(message)
                continue
            opened.append(remote)
            try:
                catalog.add_remote(name, remote, sizes)
            except Exception as exc:
                message = "%s: cannot list %s: %s" % (name, remote.describe(), log.mask(exc))
                if strict:
                    raise PackratError(message)
                catalog.errors.append(message)
        yield catalog
    finally:
        for remote in opened:
            try:
                remote.close()
            except Exception:
                pass


def fetch(catalog, names, location, work_dir):
    """Make every file of ``names`` readable in one directory: the directory
    of BACKUP_DIR when all are there, else ``work_dir`` holding links to the
    local ones and copies downloaded from ``location``. Returns the
    directory."""
    if all(catalog.local_path(n) for n in names):
        return catalog.directory
    remote = catalog.remotes.get(location) if location else None
    for name in names:
        dest = os.path.join(work_dir, name)
        if os.path.lexists(dest):
            continue
        local = catalog.local_path(name)
        if local:
            os.symlink(os.path.abspath(local), dest)
        elif remote is not None and location in catalog.files.get(name, {}):
            if "transfer" not in remote.capabilities:
                raise PackratError("%s is on %s, whose module cannot fetch files (a Bash module "
                                   "lists and deletes only): copy it into %s by hand"
                                   % (name, remote.describe(), catalog.directory))
            log.verbose("[RESTORE] fetching %s from %s" % (name, remote.describe()))
            transfer.download(remote, name, dest)
        else:
            where = " or on %s" % location if location else " (use --from MODULE to fetch it)"
            seen = catalog.where(name)
            also = "; it is on %s" % ", ".join(seen) if seen and not location else ""
            raise PackratError("%s is not in %s%s%s" % (name, catalog.directory, where, also))
    return work_dir


# -- dar ---------------------------------------------------------------------

WRONG_KEY = "wrong ENCRYPTION_KEY or cipher?"
# what dar 2.7 says when an encrypted archive is read with a wrong key
_DAR_BAD_KEY = ("elastic buffer", "incoherent structure", "wrong key")


def dar(args, key, **kw):
    """Run dar without a terminal (-Q: no tty warning; questions get "no"),
    with ``key`` (core.darkey.handed). A failure that reads as a wrong key
    says so."""
    try:
        return execute.run([execute.require("dar")] + list(args) + key.args + ["-Q"],
                           pass_fds=key.pass_fds, **kw)
    except execute.CommandFailed as exc:
        if key and any(s in exc.stderr for s in _DAR_BAD_KEY):
            raise PackratError("%s (%s)" % (exc, WRONG_KEY)) from None
        raise


_ENCRYPTION_LINE = re.compile(r"^Symmetric key encryption used\s*:\s*(.*?)\s*$", re.M)


def require_encrypted(path, key, name=None):
    """With a key set (``key``: core.darkey.handed), refuse an archive that is not
    encrypted: with ENCRYPTION_KEY set, packrat writes encrypted archives
    only, so a plain one is planted or foreign and is not trusted. ``path``
    is the archive as dar takes it (no slice number, no .dar). Reads the
    archive's summary (``dar -l -q``: its header and catalogue, not its
    data); a wrong key fails here already, and says so."""
    if not key:
        return
    name = name or os.path.basename(path)
    result = dar(["-l", path, "-q"], key, env={"LC_ALL": "C", "LANGUAGE": ""}, changes=False,
                 quiet=True)
    found = _ENCRYPTION_LINE.search(result.out if result else "")
    if found is None:
        raise PackratError("%s: cannot tell whether it is encrypted (dar -l printed no "
                           "\"Symmetric key encryption used\" line): not trusted" % name)
    if found.group(1).lower() in ("none", "no", ""):
        raise PackratError("%s is not encrypted, but ENCRYPTION_KEY is set: refused (packrat "
                           "encrypts every archive it makes with that key, so this one was put "
                           "there by someone else). To restore it anyway, copy it aside and run "
                           "dar -x on it by hand" % name)


def until(ctx):
    """The last day whose files count without -d: the run's date (today, or
    PACKRAT_DATE). A file dated after it is not packrat's own (a planted
    name, or a clock gone wrong) and is never taken as the newest."""
    return ctx.now.date()
