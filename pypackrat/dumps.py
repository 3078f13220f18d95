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

``.sql.zst`` with COMPRESSOR=zstd. An encrypted dump keeps the same name.
The helpers ``dump_name``, ``parse_dump_name``, ``is_encrypted``,
``decompress_argv`` and ``decrypt_argv`` are for restoring, too.
"""
import contextlib
import os
import re
import shutil

from pypackrat import execute, log
from pypackrat.errors import PackratError

ALL = "__ALL__"
ALL_NAME = "all"
GLOBALS_NAME = "all.globals"
ENGINES = ("mysql", "postgresql")

# name -> (argv reading stdin and writing stdout, file suffix)
COMPRESSORS = {
    "bzip2": (["bzip2", "-c", "-9"], ".sql.bz2"),
    "lbzip2": (["lbzip2", "-c", "-9"], ".sql.bz2"),
    "pbzip2": (["pbzip2", "-c", "-9"], ".sql.bz2"),
    "zstd": (["zstd", "-q", "-c", "-T0"], ".sql.zst"),
}
DECOMPRESSORS = {".bz2": ["bzip2", "-d", "-c"], ".zst": ["zstd", "-q", "-d", "-c"]}

# DB_CIPHER -> openssl enc options, the same for encrypting and decrypting.
# blowfish is the original's format: `openssl enc -bf -salt` with OpenSSL 3's
# default digest (sha256) for the key; on OpenSSL 3 it needs the legacy provider.
CIPHERS = {
    "aes-256-cbc": ["-aes-256-cbc", "-salt", "-pbkdf2", "-iter", "10000", "-md", "sha256"],
    "blowfish": ["-provider", "legacy", "-provider", "default",
                 "-bf", "-salt", "-md", "sha256"],
}


# -- names ------------------------------------------------------------------

def file_part(database):
    """A database name as it goes into a file name: ``__ALL__`` is ``all``;
    a ``/`` (legal in a PostgreSQL name, not in a file name) becomes ``-``."""
    if database == ALL:
        return ALL_NAME
    return database.replace("/", "-").replace("\0", "")


def suffix(compressor):
    return COMPRESSORS[compressor][1]


def dump_name(hostname, engine, database, today, compressor="bzip2"):
    """``HOST-ENGINE-DB-TODAY.sql.bz2`` (``.sql.zst`` for zstd)."""
    return "%s-%s-%s-%s%s" % (hostname, engine, file_part(database), today, suffix(compressor))


_NAME = re.compile(r"^(?P<host>.+)-(?P<engine>mysql|postgresql)-(?P<database>.+)-"
                   r"(?P<date>20\d{6})(?P<suffix>\.sql\.(?:bz2|zst))$")


def parse_dump_name(name):
    """(host, engine, database part, date, suffix) of a dump's file name, or
    None. The database part is ``all`` for an __ALL__ dump and
    ``all.globals`` for PostgreSQL's globals of a split __ALL__."""
    m = _NAME.match(os.path.basename(name))
    if not m:
        return None
    return m.group("host"), m.group("engine"), m.group("database"), m.group("date"), m.group("suffix")


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
    """Problems of the settings shared by both database modules."""
    problems = []
    compressor = settings["COMPRESSOR"]
    if not shutil.which(COMPRESSORS[compressor][0][0]):
        problems.append("%s: COMPRESSOR=%s, but %s is not installed (not found in PATH)"
                        % (where(settings, "COMPRESSOR"), compressor, COMPRESSORS[compressor][0][0]))
    key = settings["ENCRYPTION_KEY"]
    if key and ("\n" in key or "\r" in key):
        problems.append("%s: ENCRYPTION_KEY holds a line break; openssl would use only its first line"
                        % where(settings, "ENCRYPTION_KEY"))
    return problems


def program(*names):
    """The first of ``names`` found in PATH (MariaDB 11 may ship only its
    own names: mariadb-dump, mariadb); the first name when none is."""
    for name in names:
        if shutil.which(name):
            return name
    return names[0]


def select(names, skip, exclude):
    """The databases of a listing that __ALL__ covers: not a system schema
    in ``skip``, not matching a pattern of ``exclude`` (shell globs)."""
    import fnmatch
    return [n for n in names if n and n not in skip
            and not any(fnmatch.fnmatchcase(n, pattern) for pattern in exclude)]


# -- one dump ----------------------------------------------------------------

def dump(ctx, database, engine, dump_argv, env=None, pass_fds=()):
    """Run ``dump_argv | compressor [| openssl enc -e]`` into the dump file of
    ``database`` in BACKUP_DIR. Returns the final path (None in dry run);
    raises PackratError (the failing program and its last error lines) and
    leaves no file under the final name when any process fails."""
    settings = ctx.settings
    compressor = settings["COMPRESSOR"]
    name = dump_name(ctx.hostname, engine, database, ctx.today, compressor)
    final = os.path.join(ctx.backup_dir, name)
    stages = [list(dump_argv), list(COMPRESSORS[compressor][0])]
    fds = list(pass_fds)
    with contextlib.ExitStack() as stack:
        key = settings["ENCRYPTION_KEY"]
        if key:
            log.add_secret(key)
            fd = stack.enter_context(execute.secret_fd(key))
            stages.append(encrypt_argv(settings["DB_CIPHER"], fd))
            fds.append(fd)
        if execute.dry_run():
            execute.pipeline(stages, final, env=env, pass_fds=fds)
            return None
        with execute.atomic_output(final) as tmp:
            # 0600 from the start: a dump holds every row and password hash
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600))
            try:
                execute.pipeline(stages, tmp, env=env, pass_fds=fds)
            except PackratError as exc:
                raise PackratError("%s backup of %s failed: %s" % (engine, database, exc)) from None
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # on disk before it gets its final name
            finally:
                os.close(fd)
    return final


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
    (a database named in the targets and also part of a split __ALL__)."""
    done = set()
    for database, job in jobs:
        if database is not None:
            if file_part(database) in done:
                log.verbose("%s: already dumped in this run" % database)
                continue
            done.add(file_part(database))
        yield job


def failing(message):
    """A job that fails with ``message`` (a listing that went wrong)."""
    def job():
        raise PackratError(message)
    return job
