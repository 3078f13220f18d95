"""``packrat restore``: a directory or a database back as of a date.

A filesystem target comes back from its master for that date (the newest
master on or before it) and the newest incremental after that master up to
the date: each incremental is a differential against its master, so nothing
between is needed (see docs/ORIGINAL.md). The second archive goes over the first
with ``-w``, which also removes the files deleted in between. The key
reaches dar through a 0600 DCF file (``-B``), never argv.

A database dump is decrypted, decompressed and fed to ``mysql`` or
``psql``: processes joined by OS pipes, every exit status checked, the
password in an option file or PGPASSFILE, the key on an inherited
descriptor.

Archives missing from BACKUP_DIR are fetched from an upload module's remote
with ``--from MODULE`` into a temporary directory, removed afterwards.

What comes back is not trusted more than what is local (a remote, a share,
BACKUP_DIR itself may hold files planted by someone else):

- without -d, a file dated after the run's date is never the newest;
- with ENCRYPTION_KEY set, a plain dump or archive is refused by name
  (packrat encrypts all it makes), and the key is tried first: a wrong key
  or cipher is named before anything is touched;
- a dump cannot run client commands: psql runs in restricted mode
  (``\restrict`` with a random key; a psql without it is refused), mysql
  with ``--binary-mode`` and ``--sandbox`` where it has it;
- a database created for a restore that fails is dropped again; one that
  existed before is never dropped by a failure.

MySQL restores connect as MYSQL_RESTORE_USER / MYSQL_RESTORE_PASS when set
(a backup user may only read); after a whole-server MySQL restore, FLUSH
PRIVILEGES makes its grants count.
"""
import argparse
import textwrap
import contextlib
import os
import re
import shutil
import tempfile

from pypackrat import catalog, execute, log
from pypackrat.core import chains, darkey, dbclient, names, temp
from pypackrat.errors import PackratError

TAG = "[RESTORE]"

EXAMPLES = """\
examples:
  packrat restore /home/sites /srv/restore
        /home/sites as of its newest archive, into the empty /srv/restore
  packrat restore -d 20240214 /home/sites /srv/restore
        as it was on 14 February 2024 (master + newest incremental up to it)
  packrat restore --file www/index.php /home/sites /tmp/one
        one file (or directory) only, relative to the target
  packrat restore --from ssh -d 20240210 /etc /tmp/etc
        fetch from the ssh module's remote what BACKUP_DIR no longer holds
  packrat restore --host oldbox /etc /tmp/etc
        archives named after another host (a replacement machine)
  packrat restore mysql shop --into shop_restored
        the newest dump of database shop, into a new database beside it
  packrat restore -d 20240214 postgresql all
        a pg_dumpall dump of that day, through psql
"""


def parser():
    p = argparse.ArgumentParser(
        prog="packrat restore",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Restore a filesystem target (an FS_TARGETS path, or an archive name prefix "
                    "such as myserver-home-sites) into a directory, or a database dump "
                    "(mysql DB / postgresql DB; DB 'all' for a whole-server dump) into a "
                    "database, as of a date (default: the newest archive).", 78),
        epilog=EXAMPLES)
    p.add_argument("what", metavar="TARGET|mysql|postgresql",
                   help="a filesystem target, or the word mysql or postgresql")
    p.add_argument("where", metavar="DIR|DATABASE",
                   help="for a target: the directory to restore into (empty or new); "
                        "for a database engine: the database name in the dump ('all' for __ALL__)")
    p.add_argument("-d", "--date", metavar="YYYYMMDD",
                   help="restore as of this day (default: the newest archive)")
    p.add_argument("--from", dest="source", metavar="MODULE",
                   help="fetch files missing from BACKUP_DIR from this upload module's remote")
    p.add_argument("--host", metavar="NAME",
                   help="archives named after this host (default: HOSTNAME)")
    p.add_argument("--file", dest="files", action="append", default=[], metavar="PATH",
                   help="restore only this file or directory, relative to the target "
                        "(or absolute, under it); may be repeated")
    p.add_argument("--into", metavar="NAME",
                   help="restore a database dump into database NAME (created), beside the original")
    p.add_argument("--force", action="store_true",
                   help="restore into a non-empty directory (files are overwritten), or replace "
                        "an existing database (dropped and created again)")
    p.add_argument("--cipher", choices=("aes-256-cbc", "blowfish"),
                   help="cipher of an encrypted dump (default: DB_CIPHER)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where fetched files are kept during the restore (default: BACKUP_DIR)")
    return p


def main(ctx, args):
    a = parser().parse_args(args)
    day = names.parse_date(a.date) if a.date else None
    if a.what in names.ENGINES:
        if a.files:
            raise PackratError("--file is for a filesystem target, not a database")
        return restore_database(ctx, a.what, a.where, day, a.source, a.host, a.into, a.force,
                                a.cipher, a.work_dir)
    if a.into:
        raise PackratError("--into is for a database; a filesystem target goes into DIR")
    return restore_target(ctx, a.what, a.where, day, a.source, a.host, a.files, a.force, a.work_dir)


@contextlib.contextmanager
def work_dir(ctx, where=None):
    """A private temporary directory for fetched files, removed after."""
    parent = where or ctx.backup_dir
    if not os.path.isdir(parent):
        parent = None
    elif where:
        _trusted_place(where, "--work-dir")
    # the PID in the name: the next nightly run sweeps it if this one is killed
    path = tempfile.mkdtemp(prefix=temp.temporary_name("restore-"), dir=parent)
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- filesystem ------------------------------------------------------------------

def _relative(target, path):
    """``path`` relative to the target's root, as dar's -g takes it."""
    if os.path.isabs(path):
        root = target.rstrip("/") + "/" if "/" in target else None
        if root is None or not (path + "/").startswith(root):
            raise PackratError("--file %s is not under the target %s" % (path, target))
        path = path[len(root):]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise PackratError("--file %r: give a path inside the target" % path)
    return "/".join(parts)


def _trusted_place(path, what, holds_files=True):
    """Refuse ``path`` (a directory root writes into) when another user owns
    it or a directory above it, or can write to it: that user could put a
    symbolic link where dar is about to write, and have root write through
    it (into /etc). A symbolic link of another user's at ``path`` itself is
    refused too: it could be pointed elsewhere during the restore."""
    import stat
    from pypackrat import config
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
        raise PackratError("%s: refusing it (%s): it is a symbolic link of %s's, who could point "
                           "it elsewhere while packrat writes as root; give the real path"
                           % (path, what, config.owner_name(st.st_uid)))
    problems = config.untrusted(path, "packrat writes into it as root (%s)" % what,
                                holds_files=holds_files)
    if problems:
        raise PackratError(problems[0])


def _check_destination(dest, force):
    if os.path.lexists(dest):
        _trusted_place(dest, "the restore's destination")
    else:  # made by packrat, 0700, in the nearest directory there is (a sticky /tmp will do)
        above = os.path.dirname(dest)
        while not os.path.lexists(above):
            above = os.path.dirname(above)
        _trusted_place(above, "the directory of the restore's destination", holds_files=False)
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise PackratError("%s exists and is not a directory" % dest)
    if os.path.isdir(dest) and os.listdir(dest) and not force:
        raise PackratError("%s is not empty: restore into an empty or new directory, "
                           "or add --force to restore over what is there" % dest)


def choose(ctx, cat, prefix, day, source):
    """The archives to restore ``prefix`` as of ``day`` (None: newest)."""
    archives = cat.archives()
    mine = [a for a in archives.values() if a.prefix == prefix]
    if not mine:
        hint = "" if source else " (add --from MODULE to look on a remote)"
        known = ", ".join(cat.prefixes()) or "none"
        raise PackratError("no archive of %s in %s%s%s; archives found for: %s"
                           % (prefix, ctx.backup_dir, " or on %s" % source if source else "", hint,
                              known))
    if day is None:
        today = catalog.until(ctx)
        current = [a for a in mine if a.day <= today]
        if not current:
            raise PackratError("every archive of %s is dated after today (%s), so none is taken as "
                               "the newest: give -d DATE to restore one of them (%s)"
                               % (prefix, names.day_text(today),
                                  ", ".join(sorted(a.base for a in mine))))
        day = max(a.day for a in current)
    incremental = ctx.settings["FS_INCREMENTAL"]
    # every archive seen by any slice counts: one missing its first slice is
    # reported below, not silently passed over
    chosen = chains.pick(archives.values(), prefix, day)
    if not chosen:
        oldest = min(a.day for a in mine)
        raise PackratError("no archive of %s on or before %s (the oldest is of %s)"
                           % (prefix, names.day_text(day), names.day_text(oldest)))
    if incremental and not chosen[0].master:
        hint = "" if source else "; if it is on a remote, add --from MODULE"
        raise PackratError("%s is an incremental, and no master of %s dated on or before it is "
                           "there to restore it from%s" % (chosen[0].names()[0], prefix, hint))
    for archive in chosen:
        missing = archive.missing_slices()
        if missing:
            raise PackratError("%s: slice %s is missing" % (archive.base, ", ".join(map(str, missing))))
    return day, chosen


def restore_target(ctx, target, dest, day, source, host, files, force, work=None):
    if "/" not in target and not host:
        host = ""  # an archive prefix names its host itself
    host = ctx.hostname if host is None else host
    prefix = names.target_prefix(host, target)
    dest = os.path.abspath(dest)
    _check_destination(dest, force)
    wanted = [_relative(target, f) for f in files]
    with catalog.gather(ctx, host, [source] if source else [], sizes=False, strict=True) as cat, \
            work_dir(ctx, work) as tmp:
        day, chosen = choose(ctx, cat, prefix, day, source)
        if ctx.dry_run:
            for archive in chosen:
                fetch = [n for n in archive.names() if not cat.local_path(n)]
                log.info("[dry run] would restore %s into %s%s" % (
                    archive.base, dest, " after fetching %s from %s" % (", ".join(fetch), source)
                    if fetch else ""))
            return 0
        places = [catalog.fetch(cat, a.names(), source, tmp) for a in chosen]
        with darkey.handed(ctx.settings["ENCRYPTION_KEY"]) as key:
            for archive, place in zip(chosen, places):  # all of them, before anything is written
                catalog.require_encrypted(os.path.join(place, archive.base), key, archive.base)
            if not os.path.isdir(dest):
                os.makedirs(dest, mode=0o700)
            _trusted_place(dest, "the restore's destination")
            dest = os.path.realpath(dest)  # a link of root's, resolved once
            for i, (archive, place) in enumerate(zip(chosen, places)):
                log.verbose("%s restoring %s into %s" % (TAG, archive.base, dest))
                args = ["-x", os.path.join(place, archive.base), "-R", dest, "-q"]
                if i or force:
                    args.append("-w")  # over the master: replace, and remove what was deleted
                for path in wanted:
                    args += ["-g", path]
                catalog.dar(args, key)
    absent = [p for p in wanted if not os.path.lexists(os.path.join(dest, p))]
    if absent:
        raise PackratError("not in the backup of %s as of %s: %s"
                           % (target, names.day_text(day), ", ".join(absent)))
    full = "incremental" if ctx.settings["FS_INCREMENTAL"] else "full"
    what = " + ".join("%s %s" % ("master" if a.master else full, names.day_text(a.day))
                      for a in chosen)
    log.info("Restored %s as of %s (%s) into %s" % (target, names.day_text(day), what, dest))
    return 0


# -- databases -------------------------------------------------------------------

# the first bytes of a decompressed dump's compressed form, by suffix
MAGIC = {".bz2": b"BZh", ".zst": b"\x28\xb5\x2f\xfd"}


def _magic(path):
    for ext, magic in MAGIC.items():
        if path.endswith(ext):
            return magic
    return None


def _cipher_hint(cipher):
    return "%s (the cipher is %s: --cipher or DB_CIPHER)" % (catalog.WRONG_KEY, cipher)


def _check_key(decrypt, path, fd, cipher):
    """Decrypt the start of ``path`` and check that it is what the suffix
    says (bzip2's or zstd's magic): a wrong key or cipher gives random
    bytes. Nothing is touched before this is known."""
    magic = _magic(path)
    if magic is None:
        return
    with tempfile.TemporaryFile() as head:
        try:
            # openssl may end with "error writing output file" when head
            # has had enough: its status is not the answer, the bytes are
            execute.pipeline([decrypt + ["-in", path], ["head", "-c", str(len(magic))]], head,
                             pass_fds=[fd], ok_codes=[range(0, 256), (0,)])
        except execute.CommandFailed as exc:
            raise PackratError("%s: cannot decrypt it: %s; %s"
                               % (os.path.basename(path), exc, _cipher_hint(cipher))) from None
        finally:
            os.lseek(fd, 0, os.SEEK_SET)  # the key's descriptor, read again by the real run
        head.seek(0)
        start = head.read()
    if start != magic:
        raise PackratError("%s: decrypting it gives no %s data: %s"
                           % (os.path.basename(path), path.rsplit(".", 1)[-1],
                              _cipher_hint(cipher)))


@contextlib.contextmanager
def decode_stages(settings, path, cipher=None):
    """(stages, pass_fds): the commands that turn a dump file back into SQL
    on stdout: ``openssl enc -d`` when the file is encrypted (the key on an
    inherited descriptor), then the decompressor of its suffix. The
    commands are the dump module's own (pypackrat.dumps).

    With ENCRYPTION_KEY set, a dump that is not encrypted is refused (packrat
    encrypts every dump with it, so a plain one was put there by someone
    else), and the key is tried on the dump's start first: a wrong key or
    cipher is named as such before anything is restored."""
    from pypackrat import dumps
    decompress = dumps.decompress_argv(path)
    key = settings["ENCRYPTION_KEY"]
    name = os.path.basename(path)
    if not dumps.is_encrypted(path):
        if key:
            raise PackratError("%s is not encrypted, but ENCRYPTION_KEY is set: refused (packrat "
                               "encrypts every dump it makes with that key, so this one was put "
                               "there by someone else). To restore it anyway, check its content "
                               "and load it by hand" % name)
        yield [decompress + [path]], []
        return
    if not key:
        raise PackratError("%s is encrypted, and ENCRYPTION_KEY is empty" % name)
    log.add_secret(key)
    cipher = cipher or settings["DB_CIPHER"]
    with execute.secret_fd(key) as fd:
        decrypt = dumps.decrypt_argv(cipher, "fd:%d" % fd)
        _check_key(decrypt, path, fd, cipher)  # restore and verify: never in a dry run
        yield [decrypt + ["-in", path], decompress], [fd]


def find_dump(cat, engine, database, day, source=None, until=None):
    """The dump to restore: the newest on or before ``day`` (-d), or, with
    no -d, the newest not dated after ``until`` (the run's date)."""
    part = names.file_part(database)
    mine = [d for d in cat.dumps() if d.engine == engine and d.db == part]
    hint = "" if source else " (add --from MODULE to look on a remote)"
    if not mine:
        raise PackratError("no %s dump of %s (%s-%s-%s-DATE.sql.*) found%s"
                           % (engine, database, cat.host, engine, part, hint))
    if day is not None:
        before = [d for d in mine if d.day <= day]
        if not before:
            raise PackratError("no %s dump of %s on or before %s (the oldest is of %s)%s"
                               % (engine, database, names.day_text(day),
                                  names.day_text(min(d.day for d in mine)), hint))
        mine = before
    elif until is not None:
        current = [d for d in mine if d.day <= until]
        if not current:
            raise PackratError("every %s dump of %s is dated after today (%s), so none is taken "
                               "as the newest: give -d DATE to restore one of them (%s)"
                               % (engine, database, names.day_text(until),
                                  ", ".join(d.name for d in mine)))
        mine = current
    return max(mine, key=lambda d: (d.day, d.name))


def restore_database(ctx, engine, database, day, source, host, into, force, cipher=None,
                     work=None):
    whole = names.is_whole_server(database)
    if whole and into:
        raise PackratError("a whole-server dump (%s) restores into the server as it is; "
                           "--into is for one database" % database)
    target = into or database
    with catalog.gather(ctx, host, [source] if source else [], sizes=False, strict=True) as cat, \
            work_dir(ctx, work) as tmp:
        dump = find_dump(cat, engine, database, day, source, catalog.until(ctx))
        if ctx.dry_run:
            log.info("[dry run] would restore %s into %s%s" % (
                dump.name, "the server" if whole else "database %s" % target,
                "" if cat.local_path(dump.name) else " after fetching it from %s" % source))
            return 0
        place = catalog.fetch(cat, [dump.name], source, tmp)
        path = os.path.join(place, dump.name)
        with decode_stages(ctx.settings, path, cipher) as (stages, fds):
            if engine == "mysql":
                _mysql(ctx, stages, fds, target, whole, force)
            else:
                _postgresql(ctx, stages, fds, target, whole, force)
    where = "the server" if whole else "database %s" % target
    log.info("Restored %s into %s" % (dump.name, where))
    return 0


def _sql_literal(text):
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")


def _mysql_identifier(name):
    return "`%s`" % name.replace("`", "``")


def _check_name(name):
    if not name or "\0" in name or "\n" in name or name != name.strip():
        raise PackratError("%r is not a database name packrat can restore into" % name)


class _Overlay:
    """Settings with some values replaced (the restore credentials)."""

    def __init__(self, base, values):
        self._base, self._values = base, values

    def __getitem__(self, key):
        return self._values[key] if key in self._values else self._base[key]

    def get(self, key, default=None):
        return self._values[key] if key in self._values else self._base.get(key, default)

    def __contains__(self, key):
        return key in self._values or key in self._base

    def __getattr__(self, name):
        return getattr(self._base, name)


def restore_settings(settings):
    """The settings a MySQL restore connects with: MYSQL_RESTORE_USER and
    MYSQL_RESTORE_PASS when either is set (a user that may create databases,
    where the backup user may only read), else MYSQL_USER and MYSQL_PASS.
    MYSQL_RESTORE_USER takes MYSQL_RESTORE_PASS (empty: no password, or the
    client's usual option files); MYSQL_RESTORE_PASS alone goes with
    MYSQL_USER."""
    user = settings.get("MYSQL_RESTORE_USER") or ""
    password = settings.get("MYSQL_RESTORE_PASS") or ""
    if not user and not password:
        return settings
    return _Overlay(settings, {"MYSQL_USER": user or settings["MYSQL_USER"],
                               "MYSQL_PASS": password})


def _mysql_client_options(client):
    """Options that keep a dump from running client commands: --binary-mode
    (no client command but \\C and DELIMITER is read from piped input), and
    --sandbox where the client has it (MariaDB 10.5.25+, MySQL 8.0.40+: no
    file system or shell access at all)."""
    options = ["--binary-mode"]
    try:
        result = execute.run([client, "--no-defaults", "--help"], changes=False, quiet=True)
        if result and re.search(r"^\s*--sandbox\b", result.out, re.M):
            options.append("--sandbox")
    except PackratError:
        pass
    return options


def _restore_user_hint(settings, message):
    """What to do when the server refused the restore user a database
    (ERROR 1044, 1142, 1227): a least-privilege backup user may only read."""
    if not re.search(r"ERROR (1044|1142|1227)\b|Access denied|command denied", message):
        return ""
    if settings.get("MYSQL_RESTORE_USER"):
        return "; MYSQL_RESTORE_USER needs the right to create and drop databases"
    return ("; the backup user (MYSQL_USER) may not create or drop databases: set MYSQL_RESTORE_USER "
            "and MYSQL_RESTORE_PASS to a user that may")


def _mysql(ctx, stages, fds, target, whole, force):
    from pypackrat import dumps
    client = dumps.program("mysql", "mariadb")
    options = _mysql_client_options(client)
    with dbclient.mysql(restore_settings(ctx.settings)) as conn:
        conn = list(conn)  # its /dev/fd/N (the password) execute passes on by itself
        created = False
        # the name only ever inside SQL, quoted: never an argument that a
        # client could read as an option (a database named -f... or --init-command=...)
        drop = [client] + conn + ["-e", "DROP DATABASE %s" % _mysql_identifier(target)]
        if not whole:
            _check_name(target)
            query = ("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
                     % _sql_literal(target))
            found = execute.run([client] + conn + ["-N", "-B", "-e", query], changes=False,
                                pass_fds=fds)
            try:
                created = _fresh_database(target, bool(found and found.out.strip()), force, drop,
                                          [client] + conn + ["-e", "CREATE DATABASE %s"
                                                             % _mysql_identifier(target)],
                                          pass_fds=fds)
            except PackratError as exc:
                raise PackratError(str(exc) + _restore_user_hint(ctx.settings, str(exc))) from None
        # the connection options first: --defaults-file must lead
        load = [client] + conn + options + ([] if whole else ["--database=" + target])
        with _dropped_on_failure(target if created else None, drop, fds=fds):
            _load(stages + [load], None, fds, "the server" if whole else "database %s" % target)
        if whole:
            # the dump rewrote the grant tables: make them count now
            try:
                execute.run([client] + conn + ["-e", "FLUSH PRIVILEGES"], pass_fds=fds)
            except PackratError as exc:
                log.warn("%s the restored users and grants take effect after FLUSH PRIVILEGES "
                            "(or a server restart), which failed here: %s" % (TAG, exc))


RESTRICTED = "backslash commands are restricted"
RESTRICT_HELP = ("this psql cannot run in restricted mode (\\restrict, PostgreSQL 13.22, 14.19, "
                 "15.14, 16.10, 17.6 or later), which packrat needs to restore a dump safely: "
                 "restricted, a dump cannot run shell or psql commands. Update the PostgreSQL "
                 "client")
# what pg_dumpall writes between databases, in its exact forms: a database
# name and nothing else (conninfo-quoted and psql-quoted), an encoding name
_PG_ALLOWED = ("\\\\connect [A-Za-z0-9_]+"
               "|\\\\connect -reuse-previous=on \"dbname='([^'\"\\\\]|\\\\[\\\\']|\"\")*'\""
               "|\\\\encoding [A-Za-z0-9_-]+")


def _restrict_key():
    import secrets
    return secrets.token_hex(24)


def _psql_filter(key, whole):
    """A sed stage between the dump and psql, which runs in restricted mode
    (``\\restrict KEY``: no backslash command but ``\\unrestrict KEY``):

    - it removes the dump's own ``\\restrict``/``\\unrestrict`` lines
      (pg_dump 15.14+ writes them; psql is restricted already);
    - for a pg_dumpall dump only, it lets through the commands that dump
      needs between databases, ``\\connect`` to a database (a name and
      nothing else) and ``\\encoding NAME``, by lifting the restriction
      around each with our key, which the dump cannot know.

    Every other backslash command (``\\!``, ``\\o``, ``\\copy``, ...) reaches
    psql restricted, and fails."""
    argv = ["env", "LC_ALL=C", "sed", "-E", "-e", "/^\\\\(un)?restrict [A-Za-z0-9]+$/d"]
    if whole:
        argv += ["-e", "s/^(%s)$/\\\\unrestrict %s\\n&\\n\\\\restrict %s/" % (_PG_ALLOWED, key, key)]
    return argv


def _psql_check_restrict(psql, env, fds):
    key = _restrict_key()
    try:
        execute.run(psql + ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", "\\restrict " + key,
                            "-c", "\\unrestrict " + key], env=env, pass_fds=fds, changes=False,
                    quiet=True)
    except execute.CommandFailed as exc:
        if "invalid command" in exc.stderr:
            raise PackratError(RESTRICT_HELP) from None
        raise


def _refused(text):
    return RESTRICTED in text or "\\unrestrict" in text


def _postgresql(ctx, stages, fds, target, whole, force):
    with dbclient.postgresql(ctx.settings) as (env, conn):
        conn = list(conn)
        psql = ["psql", "-X", "-q"] + conn
        _psql_check_restrict(psql, env, fds)
        key = _restrict_key()
        log.add_secret(key)  # not shown in -v output: the dump never sees it
        restricted = ["-c", "\\restrict " + key, "-f", "-"]
        if whole:
            # pg_dumpall output connects to each database itself; the roles
            # it creates may exist already (the one we connect as does)
            load = psql + ["-d", "postgres"] + restricted
            results = _load(stages + [_psql_filter(key, True), load], env, fds, "the server")
            messages = results[-1].err.splitlines()
            refused = [l for l in messages if _refused(l)]
            if refused:
                raise PackratError("the dump holds psql commands, which packrat does not run "
                                   "(a planted or altered dump?); the server is partly restored: "
                                   "%s" % " / ".join(refused[:3]))
            errors = [l for l in messages if "ERROR:" in l]
            bad = [l for l in errors if not ("role" in l and "already exists" in l)]
            for line in errors:
                log.verbose("%s psql: %s" % (TAG, line))
            if bad:
                raise PackratError("psql reported %d error(s) restoring the server: %s"
                                   % (len(bad), " / ".join(bad[:3])))
            return
        _check_name(target)
        found = execute.run(psql + ["-d", "postgres", "-A", "-t", "-v", "name=" + target],
                            env=env, stdin=b"SELECT 1 FROM pg_database WHERE datname = :'name';\n",
                            changes=False, pass_fds=fds)
        # after --, the name is a name and never an option (-f..., --maintenance-db=...);
        # psql gets a connection string holding the name alone, so that a name
        # such as host=... port=... never picks the server
        drop = ["dropdb"] + conn + ["--", target]
        created = _fresh_database(target, bool(found and found.out.strip()), force,
                                  drop, ["createdb"] + conn + ["--", target], env, pass_fds=fds)
        load = (psql + ["-v", "ON_ERROR_STOP=1", "--single-transaction", dbclient.dbname_arg(target)]
                + restricted)
        with _dropped_on_failure(target if created else None, drop, env, fds):
            try:
                _load(stages + [_psql_filter(key, False), load], env, fds, "database %s" % target)
            except PackratError as exc:
                if _refused(str(exc)):
                    raise PackratError("restore into database %s refused: the dump holds psql "
                                       "commands, which packrat does not run (a planted or "
                                       "altered dump?): %s" % (target, exc)) from None
                raise


def _fresh_database(target, exists, force, drop, create, env=None, pass_fds=()):
    """Make ``target`` an empty database: refuse an existing one unless
    ``force``, which drops it first. Returns whether it did not exist
    before (so that a failed restore drops it again)."""
    if exists and not force:
        raise PackratError("database %s exists: restore beside it with --into NAME, or "
                           "replace it with --force" % target)
    if exists:
        log.verbose("%s dropping database %s" % (TAG, target))
        execute.run(drop, env=env, pass_fds=pass_fds)
    log.verbose("%s creating database %s" % (TAG, target))
    execute.run(create, env=env, pass_fds=pass_fds)
    return not exists


@contextlib.contextmanager
def _dropped_on_failure(target, drop, env=None, fds=()):
    """Drop database ``target`` (one this restore created; None: none) when
    the block fails: a failed restore leaves nothing it made behind. A
    database that existed before is never dropped here."""
    try:
        yield
    except BaseException as exc:
        if target is None:
            raise
        log.verbose("%s dropping database %s, created for this restore" % (TAG, target))
        try:
            execute.run(drop, env=env, pass_fds=fds)
        except Exception as again:
            raise PackratError("%s; database %s, created for this restore, could not be dropped "
                               "again: %s" % (exc, target, again)) from None
        if isinstance(exc, PackratError):
            raise PackratError("%s; database %s, created for this restore, was dropped again"
                               % (exc, target)) from None
        raise


def _load(stages, env, fds, what):
    log.verbose("%s loading into %s" % (TAG, what))
    try:
        return execute.pipeline(stages, os.devnull, env=env, pass_fds=fds)
    except execute.CommandFailed as exc:
        hint = ""
        if os.path.basename(exc.argv[0]) == "openssl" and "bad decrypt" in exc.stderr:
            hint = "; " + catalog.WRONG_KEY
        raise PackratError("restore into %s failed (it may be partly restored): %s%s"
                           % (what, exc, hint)) from None
