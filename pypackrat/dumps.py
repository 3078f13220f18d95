"""Database dumps, shared by the mysql and postgresql modules.

One dump is ``DUMP | COMPRESSOR [| openssl enc -e ...] > BACKUP_DIR/NAME``:
separate processes joined by OS pipes (the bytes never pass through
Python), every exit status checked (a dump killed by a signal or exiting
non-zero fails the whole dump), written under a temporary name and renamed
only on success, so a failed dump leaves nothing under its final name.

The encryption key reaches openssl through an inherited memory-file
descriptor (``-pass fd:N``), never argv.

Names (kept from the original, restores and retention depend on them)::

    HOST-mysql-DB-TODAY.sql.bz2          HOST-postgresql-DB-TODAY.sql.bz2
    HOST-mysql-all-TODAY.sql.bz2         (__ALL__: mysqldump -A / pg_dumpall)
    HOST-postgresql-all.globals-TODAY.sql.bz2   (roles and tablespaces, with DB_SPLIT_ALL)

``.sql.zst`` with COMPRESSOR=zstd (at any level: ``zstd:19``). An encrypted dump keeps the same name.
DB is the database name, percent-encoded where needed: core.names makes
and parses these names. The helpers ``is_encrypted``, ``decompress_argv``
and ``decrypt_argv`` are for restoring, too.
"""
import contextlib
import os
import re
import shutil

from pypackrat import execute, log
from pypackrat.core.names import BZ2, ZST, dump_name, file_part, reserved
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting

# the settings both database modules read (each module's SETTINGS uses them)
SETTINGS = Group(
    "Both database modules",
    Setting("DB_CIPHER", "option", "aes-256-cbc", choices=("aes-256-cbc", "blowfish"),
            meaning="Dump encryption when ENCRYPTION_KEY is set: aes-256-cbc (with PBKDF2) or blowfish "
                    "(the Bash version's format); README.md gives the openssl command that decrypts each."),
    Setting("DB_SPLIT_ALL", "boolean", False,
            meaning="yes: __ALL__ writes one file per database (plus the roles for PostgreSQL) instead "
                    "of one all file."),
    Setting("COMPRESSOR", default="bzip2", sample="zstd",
            meaning="bzip2, or lbzip2 or pbzip2 (multi-core, the same .sql.bz2), or zstd (.sql.zst, "
                    "on every core: zstd -T0); a level may follow: bzip2:9 (1-9, the default 9), "
                    "zstd:19 (1-22, the default 3). Restores read any of them."),
    key="databases")

# name -> (argv reading stdin and writing stdout, file suffix), at the
# default level (the bzip2 family: -9, as the original; zstd: its own, 3)
COMPRESSORS = {
    "bzip2": (["bzip2", "-c", "-9"], BZ2),
    "lbzip2": (["lbzip2", "-c", "-9"], BZ2),
    "pbzip2": (["pbzip2", "-c", "-9"], BZ2),
    "zstd": (["zstd", "-q", "-c", "-T0"], ZST),
}
# the levels each takes (zstd above 19 needs --ultra)
COMPRESSOR_LEVELS = {"bzip2": (1, 9), "lbzip2": (1, 9), "pbzip2": (1, 9), "zstd": (1, 22)}
_COMPRESSOR = re.compile(r"([a-z0-9]+)(?::([0-9]{1,2}))?")
DECOMPRESSORS = {".bz2": ["bzip2", "-d", "-c"], ".zst": ["zstd", "-q", "-d", "-c"]}

# DB_CIPHER -> openssl enc options, the same for encrypting and decrypting.
# blowfish is the original's format: `openssl enc -bf -salt` with OpenSSL 3's
# default digest (sha256) for the key; on OpenSSL 3 it needs the legacy provider.
CIPHERS = {
    "aes-256-cbc": ["-aes-256-cbc", "-salt", "-pbkdf2", "-iter", "10000", "-md", "sha256"],
    "blowfish": ["-provider", "legacy", "-provider", "default",
                 "-bf", "-salt", "-md", "sha256"],
}


def parse_compressor(value):
    """(program, level or None) of a COMPRESSOR value (``zstd``, ``bzip2:9``);
    ValueError with the reason when it is none."""
    m = _COMPRESSOR.fullmatch(value)
    if not m or m.group(1) not in COMPRESSORS:
        raise ValueError("must be one of %s, a level may follow (bzip2:9, zstd:19)" % ", ".join(COMPRESSORS))
    name, level = m.group(1), m.group(2)
    if level is None:
        return name, None
    low, high = COMPRESSOR_LEVELS[name]
    if not low <= int(level) <= high:
        raise ValueError("%s's level is %d to %d" % (name, low, high))
    return name, int(level)


def compressor_argv(value):
    """The command of COMPRESSOR ``value``, stdin to stdout."""
    name, level = parse_compressor(value)
    argv = list(COMPRESSORS[name][0])
    if level is None:
        return argv
    if name == "zstd":
        return argv + (["--ultra"] if level > 19 else []) + ["-%d" % level]
    return argv[:-1] + ["-%d" % level]  # the bzip2 family: -9 replaced


def compressor_problem(settings):
    """The configuration error of COMPRESSOR, or None (checked whichever
    modules are enabled, as a declared option was)."""
    if not settings.valid("COMPRESSOR"):
        return None
    value = settings["COMPRESSOR"]
    try:
        parse_compressor(value)
    except ValueError as exc:
        return "%s: COMPRESSOR=%r: %s" % (settings.where("COMPRESSOR"), value, exc)
    return None


def suffix(compressor):
    """The file suffix of COMPRESSOR ``compressor`` (a level does not change it)."""
    return COMPRESSORS[parse_compressor(compressor)[0]][1]


def decompress_argv(name):
    """The command that decompresses a dump (stdin to stdout), by its suffix."""
    for ext, argv in DECOMPRESSORS.items():
        if name.endswith(ext):
            return list(argv)
    raise PackratError("%s: not a .bz2 or .zst dump" % name)


def is_encrypted(path):
    """True for an encrypted dump: openssl's "Salted__" header (a bzip2
    dump starts with "BZh", a zstd one with 28 b5 2f fd). The cipher is not
    recorded in the file: it is DB_CIPHER of the run that made it."""
    with open(path, "rb") as fh:
        return fh.read(8) == b"Salted__"


def encrypt_argv(cipher, pass_fd):
    return ["openssl", "enc", "-e"] + CIPHERS[cipher] + ["-pass", "fd:%d" % pass_fd]


def decrypt_argv(cipher, pass_arg):
    """``openssl enc -d`` for DB_CIPHER ``cipher``; ``pass_arg`` as openssl
    takes it (``fd:N``, ``env:VAR``, ``file:PATH``)."""
    return ["openssl", "enc", "-d"] + CIPHERS[cipher] + ["-pass", pass_arg]


# -- settings -----------------------------------------------------------------

def where(settings, key):
    """The file a setting came from (the config file when it was not set)."""
    return settings.where(key, "backup")


def check(settings):
    """Problems of the settings shared by both database modules (errors in
    the configuration itself; a missing program is ``requirements``)."""
    problems = []
    key = settings["ENCRYPTION_KEY"]
    if key and ("\n" in key or "\r" in key):
        problems.append("%s: ENCRYPTION_KEY holds a line break; openssl would use only its first line"
                        % where(settings, "ENCRYPTION_KEY"))
    return problems


def requirements(settings, module, programs):
    """Lines about the programs a database module needs and does not find
    in PATH: ``programs`` (each a tuple of alternative names, the first the
    usual one), the COMPRESSOR, and openssl when ENCRYPTION_KEY is set.
    Not configuration errors: the module fails when it runs, the others go on."""
    problems = []
    for names in programs:
        if not any(shutil.which(n) for n in names):
            alternatives = " (or %s)" % ", ".join(names[1:]) if len(names) > 1 else ""
            problems.append("%s: the %s module needs %s%s, which is not installed (not found in PATH)"
                            % (where(settings, "BACKUP_MODULES"), module, names[0], alternatives))
    compressor = settings["COMPRESSOR"]
    try:
        name = compressor_argv(compressor)[0]
    except ValueError:  # a configuration error (compressor_problem)
        return problems
    if not shutil.which(name):
        problems.append("%s: the %s module needs %s (COMPRESSOR=%s), which is not installed "
                        "(not found in PATH)" % (where(settings, "COMPRESSOR"), module, name, compressor))
    if settings["ENCRYPTION_KEY"] and not shutil.which("openssl"):
        problems.append("%s: the %s module needs openssl (ENCRYPTION_KEY is set), which is not "
                        "installed (not found in PATH)" % (where(settings, "BACKUP_MODULES"), module))
    return problems


def require(settings, module, programs):
    """At run time: fail the module (one line per missing program) before
    anything starts."""
    problems = requirements(settings, module, programs)
    if problems:
        raise PackratError("\n".join(problems) + "; no database dumped")


def program(*names):
    """The first of ``names`` found in PATH (MariaDB 11 may ship only its
    own names: mariadb-dump, mariadb); the first name when none is."""
    for name in names:
        if shutil.which(name):
            return name
    return names[0]


def list_databases(engine, argv, env=None):
    """The database names a server lists: ``argv`` (its client, asked for
    the hex of each name's UTF-8 bytes, one a line) run without changing
    anything; the names exactly, whatever their characters. A failure, or
    output that is not hex, is a PackratError naming ``engine``."""
    try:
        result = execute.run(argv, env=env, changes=False)
    except PackratError as exc:
        raise PackratError("%s: cannot list the databases: %s" % (engine, exc)) from None
    try:
        return [bytes.fromhex(line.strip()).decode("utf-8", "surrogateescape")
                for line in result.out.split("\n") if line.strip()]
    except ValueError:
        raise PackratError("%s: cannot list the databases: unexpected output %r"
                           % (engine, result.out[:200])) from None


def select(names, skip, exclude):
    """The databases of a listing that __ALL__ covers: not a system schema
    in ``skip``, not matching a pattern of ``exclude`` (shell globs)."""
    import fnmatch
    return [n for n in names if n and n not in skip
            and not any(fnmatch.fnmatchcase(n, pattern) for pattern in exclude)]


# -- one dump ----------------------------------------------------------------

def job(ctx, engine, database, argv, env=None, whole=False):
    """What run_jobs runs to dump ``database`` with ``argv``: a name the dump
    files reserve (core.names.reserved) fails it, loudly; ``whole``: a dump
    whose reserved name is its own (the globals of a split __ALL__)."""
    def run():
        refused = None if whole else reserved(database)
        if refused:
            raise PackratError("%s: %s" % (engine, refused))
        log.verbose("[%s] backup up database: %s" % (engine.upper(), database))
        return dump(ctx, database, engine, argv, env=env)
    return run


def dump(ctx, database, engine, dump_argv, env=None, pass_fds=()):
    """Run ``dump_argv | compressor [| openssl enc -e]`` into the dump file of
    ``database`` in BACKUP_DIR. Returns the final path (None in dry run);
    raises PackratError (the failing program and its last error lines, the
    cause first: a full disk, not the broken pipe it made) and leaves no
    file under the final name when any process fails."""
    try:
        return _dump(ctx, database, engine, dump_argv, env, pass_fds)
    except PackratError as exc:
        raise PackratError("%s backup of %s failed: %s" % (engine, database, exc)) from None
    except (OSError, UnicodeError) as exc:  # the temporary file, fsync, rename; a name argv cannot carry
        raise PackratError("%s backup of %s failed: %s" % (engine, database, _os_error(exc))) from None


def _os_error(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return "%s%s" % (exc.strerror, ": %s" % exc.filename if exc.filename else "")
    return str(exc)


def _dump(ctx, database, engine, dump_argv, env, pass_fds):
    settings = ctx.settings
    compressor = settings["COMPRESSOR"]
    name = dump_name(ctx.hostname, engine, database, ctx.today, suffix(compressor))
    final = os.path.join(ctx.backup_dir, name)
    stages = [list(dump_argv), compressor_argv(compressor)]
    fds = list(pass_fds)
    with contextlib.ExitStack() as stack:
        key = settings["ENCRYPTION_KEY"]
        if key:
            log.add_secret(key)
            fd = stack.enter_context(execute.secret_fd(key))
            stages.append(encrypt_argv(settings["DB_CIPHER"], fd))
            fds.append(fd)
        if ctx.dry_run:
            execute.pipeline(stages, final, env=env, pass_fds=fds, dry_run=True)
            ctx.made(final)  # the plan: what the uploads would send
            return None
        with execute.atomic_output(final) as tmp:
            # 0600 from the start: a dump holds every row and password hash
            out = execute.create_private(tmp)  # 0600, never through a planted link
            with open(out, "wb") as fh:
                try:
                    execute.pipeline(stages, fh, env=env, pass_fds=fds, shown=final)
                except PackratError as exc:
                    full = _full(ctx.backup_dir)  # asked before the partial file goes
                    if full:
                        raise PackratError("%s; %s" % (exc, full)) from None
                    raise
                os.fsync(fh.fileno())  # on disk before it gets its final name
    ctx.made(final)  # the uploads start on it while the next dump runs
    return final


def _full(directory):
    """"BACKUP_DIR ... is full" when its file system has no space (or no
    inode) left for packrat's user: the cause behind a writer's "error
    writing output file" (openssl) or any stage's broken pipe."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 64 * 1024 or (st.f_files and st.f_favail == 0):
        return "the file system of BACKUP_DIR %s is full" % directory
    return None


def run_jobs(jobs):
    """Run each job (a callable returning a final path or None) of an
    iterable, going on after a failure; at the end raise PartialFailure
    with every failure, one line each, and the paths that were made."""
    from pypackrat.errors import PartialFailure
    made, failures = [], []
    for job in jobs:
        try:
            path = job()
        except PackratError as exc:
            failures.append(log.mask(str(exc)))
            continue
        if path:
            made.append(path)
    if failures:
        raise PartialFailure("\n".join(failures), made)
    return made


def once(jobs):
    """The jobs of ``jobs`` (pairs of database and job), each database once
    (a database named in the targets and also part of a split __ALL__). Two
    different names with one file name (only ``__ALL__`` and a database
    named ``all`` can be) fail loudly: neither replaces the other."""
    done = {}
    for database, job in jobs:
        if database is not None:
            part = file_part(database)
            if part in done:
                if done[part] == database:
                    log.verbose("%s: already dumped in this run" % database)
                else:
                    yield failing("%r and %r would both be dumped as %s; %r is not dumped"
                                  % (done[part], database, part, database))
                continue
            done[part] = database
        yield job


def failing(message):
    """A job that fails with ``message`` (a listing that went wrong)."""
    def job():
        raise PackratError(message)
    return job
