"""Backup module ``mysql``: MySQL/MariaDB dumps with mysqldump.

Each database of MYSQL_TARGETS becomes ``HOST-mysql-DB-TODAY.sql.bz2``;
``__ALL__`` becomes ``HOST-mysql-all-TODAY.sql.bz2`` (``mysqldump -A``, or
``--databases`` with the listed databases when MYSQL_EXCLUDE is set), or
with DB_SPLIT_ALL=yes one per-database file for each database.

The password (MYSQL_PASS) goes into an option file held in memory (a
0600 memfd, ``/dev/fd/N``: nothing on disk, even after a SIGKILL) given as
``--defaults-file`` (first argument), so it is never in argv and a
``~/.my.cnf`` cannot override it. The option file includes the system-wide
option files first, so their settings (socket, max_allowed_packet...) still
apply; its own ``[client]`` section then names MYSQL_USER, MYSQL_HOST and
MYSQL_PORT beside the password, so the password goes to that server only.
With MYSQL_PASS empty nothing changes: the client reads its usual files,
``~/.my.cnf`` included, as the original did.

Database names (MYSQL_TARGETS, and the server's listing for __ALL__) are
data: they follow ``--`` on the command line, so a name such as
``--result-file=/etc/x`` is a database name to mysqldump, never an option.
"""
from pypackrat import dumps
from pypackrat.core.dbclient import mysql as connection
from pypackrat.core.names import ALL
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting

SETTINGS = Group(
    "MySQL / MariaDB module",
    Setting("MYSQL_TARGETS", "string_list", required=True,
            meaning="Database names, or '__ALL__' for every database (one file, mysqldump -A)."),
    Setting("MYSQL_USER", meaning="The user mysqldump connects as (empty: the client's default)."),
    Setting("MYSQL_PASS", secret=True,
            meaning="Its password (empty: the client's own option files, ~/.my.cnf included)."),
    Setting("MYSQL_HOST", meaning="The server (empty: the client's default)."),
    Setting("MYSQL_PORT", "integer", None, min=1, max=65535, meaning="Its port (empty: the client's default)."),
    Setting("MYSQL_EXCLUDE", "string_list",
            meaning="Databases that '__ALL__' skips (names or shell patterns such as 'test_*')."),
    Setting("MYSQL_RESTORE_USER",
            meaning="The user 'packrat restore mysql' connects as, where the backup user may only read "
                    "(SELECT, LOCK TABLES, SHOW VIEW): one that may create and drop databases. Empty: "
                    "MYSQL_USER and MYSQL_PASS."),
    Setting("MYSQL_RESTORE_PASS", secret=True, meaning="Its password."),
    uses=(dumps.SETTINGS,))

ENGINE = "mysql"
SYSTEM_SCHEMAS = {"information_schema", "performance_schema", "sys"}


def check(settings):
    """What the declarations do not check (``settings``: a settings.View)."""
    return dumps.check(settings)


DUMP_PROGRAMS = ("mysqldump", "mariadb-dump")
CLIENT_PROGRAMS = ("mysql", "mariadb")


def _needs_listing(settings):
    return ALL in settings["MYSQL_TARGETS"] and bool(
        settings["DB_SPLIT_ALL"] or settings["MYSQL_EXCLUDE"])


def _programs(settings):
    return [DUMP_PROGRAMS] + ([CLIENT_PROGRAMS] if _needs_listing(settings) else [])


def requirements(settings):
    """Lines about programs the module needs that are not installed (for
    ``packrat check``; the module fails with them when it runs)."""
    return dumps.requirements(settings, "mysql", _programs(settings))


# the names exactly, whatever their characters: hex of the UTF-8 bytes
LIST_QUERY = ("SELECT HEX(CONVERT(SCHEMA_NAME USING utf8mb4)) FROM information_schema.SCHEMATA "
              "ORDER BY SCHEMA_NAME")


def list_databases(settings, conn):
    """The databases __ALL__ covers (every database of the server without
    the system schemas and MYSQL_EXCLUDE)."""
    argv = [dumps.program(*CLIENT_PROGRAMS)] + conn + ["-N", "-B", "-e", LIST_QUERY]
    names = dumps.list_databases("mysql", argv)
    return dumps.select(names, SYSTEM_SCHEMAS, settings["MYSQL_EXCLUDE"])


def _job(ctx, conn, database, what):
    return dumps.job(ctx, ENGINE, database, [dumps.program(*DUMP_PROGRAMS)] + conn + ["--opt"] + what)


def jobs(ctx, conn):
    settings = ctx.settings
    for target in settings["MYSQL_TARGETS"]:
        if target != ALL:
            # "--": whatever its characters, a name is a database name
            yield target, _job(ctx, conn, target, ["--", target])
            continue
        if not settings["DB_SPLIT_ALL"] and not settings["MYSQL_EXCLUDE"]:
            yield target, _job(ctx, conn, target, ["-A"])
            continue
        try:
            names = list_databases(settings, conn)
        except PackratError as exc:
            yield None, dumps.failing(str(exc))
            continue
        if settings["DB_SPLIT_ALL"]:
            for name in names:
                yield name, _job(ctx, conn, name, ["--", name])
        elif names:
            yield target, _job(ctx, conn, target, ["--databases", "--"] + names)
        else:
            yield None, dumps.failing("mysql: __ALL__ with MYSQL_EXCLUDE leaves no database to dump")


def backup(ctx):
    if not ctx.dry_run:
        dumps.require(ctx.settings, "mysql", _programs(ctx.settings))
    with connection(ctx.settings) as conn:
        return dumps.run_jobs(dumps.once(jobs(ctx, conn)))
