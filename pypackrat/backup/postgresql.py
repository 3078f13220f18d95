"""Backup module ``postgresql``: PostgreSQL dumps with pg_dump / pg_dumpall.

Each database of POSTGRESQL_TARGETS becomes
``HOST-postgresql-DB-TODAY.sql.bz2`` (``pg_dump``, plain SQL); ``__ALL__``
becomes ``HOST-postgresql-all-TODAY.sql.bz2`` (``pg_dumpall``, without the
databases of POSTGRESQL_EXCLUDE), or with DB_SPLIT_ALL=yes one per-database
file for each database plus ``HOST-postgresql-all.globals-TODAY.sql.bz2``
(``pg_dumpall --globals-only``: roles, tablespaces).

The password (new setting POSTGRESQL_PASS) goes into a password file held
in memory (a 0600 memfd, ``/dev/fd/N``: nothing on disk, even after a
SIGKILL), named by the PGPASSFILE environment variable; never argv. Its
lines match the configured host and port only (and POSTGRESQL_USER), so
libpq never sends the password to another server. With POSTGRESQL_PASS
empty, authentication is as before (peer, trust, the user's own
~/.pgpass). ``-w``: never wait for a password prompt.

Database names (POSTGRESQL_TARGETS, and the server's listing for __ALL__)
are data: pg_dump gets ``--dbname=dbname='NAME'`` (a connection string
holding the name alone, quoted), so neither a name that begins with ``-``
nor one holding ``host=... port=...`` can be an option or a server.
"""
from pypackrat import dumps
from pypackrat.core.dbclient import dbname_arg, pgpass_lines  # noqa: F401 (pgpass_lines: the tests')
from pypackrat.core.dbclient import postgresql as connection
from pypackrat.core.names import ALL, GLOBALS_NAME
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting

SETTINGS = Group(
    "PostgreSQL module",
    Setting("POSTGRESQL_TARGETS", "string_list", required=True,
            meaning="Database names, or '__ALL__' for every database (pg_dumpall)."),
    Setting("POSTGRESQL_USER", meaning="The user pg_dump connects as (empty: libpq's default)."),
    Setting("POSTGRESQL_PASS", secret=True,
            meaning="Its password (empty: peer or trust authentication, or ~/.pgpass, as before)."),
    Setting("POSTGRESQL_HOST", meaning="The server, or its socket directory (empty: libpq's default)."),
    Setting("POSTGRESQL_PORT", "integer", None, min=1, max=65535, meaning="Its port (empty: libpq's default)."),
    Setting("POSTGRESQL_EXCLUDE", "string_list",
            meaning="Databases that '__ALL__' skips (names or shell patterns)."),
    uses=(dumps.SETTINGS,))

ENGINE = "postgresql"
SYSTEM_DATABASES = {"template0", "template1"}


def check(settings):
    """What the declarations do not check (``settings``: a settings.View)."""
    problems = []
    password = settings["POSTGRESQL_PASS"]
    if password and ("\n" in password or "\r" in password):
        problems.append("%s: POSTGRESQL_PASS holds a line break, which a password file cannot hold"
                        % settings.where("POSTGRESQL_PASS"))
    return problems + dumps.check(settings)


def _programs(settings):
    targets = settings["POSTGRESQL_TARGETS"]
    split = settings["DB_SPLIT_ALL"]
    listing = ALL in targets and bool(split or settings["POSTGRESQL_EXCLUDE"])
    programs = []
    if any(t != ALL for t in targets) or (ALL in targets and split):
        programs.append(("pg_dump",))
    if ALL in targets:
        programs.append(("pg_dumpall",))
    if listing:
        programs.append(("psql",))
    return programs


def requirements(settings):
    """Lines about programs the module needs that are not installed (for
    ``packrat check``; the module fails with them when it runs)."""
    return dumps.requirements(settings, "postgresql", _programs(settings))


# the names exactly, whatever their characters: hex of the UTF-8 bytes
LIST_QUERY = ("SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database "
              "WHERE datallowconn AND NOT datistemplate ORDER BY datname")


def list_all(env, conn):
    """Every database that accepts connections, templates left out."""
    argv = ["psql", "-X"] + conn + ["-d", "postgres", "-A", "-t", "-c", LIST_QUERY]
    return dumps.list_databases("postgresql", argv, env)


def exclude_pattern(name):
    """pg_dumpall --exclude-database takes a pattern; double quotes make it literal."""
    return '"%s"' % name.replace('"', '""')


def _job(ctx, env, database, argv, whole=False):
    """``whole``: the globals of a split __ALL__ (its reserved name is its own)."""
    return dumps.job(ctx, ENGINE, database, argv, env=env, whole=whole)


def _pg_dump(ctx, env, conn, database):
    return _job(ctx, env, database, ["pg_dump"] + conn + [dbname_arg(database)])


def jobs(ctx, env, conn):
    settings = ctx.settings
    exclude = settings["POSTGRESQL_EXCLUDE"]
    for target in settings["POSTGRESQL_TARGETS"]:
        if target != ALL:
            yield target, _pg_dump(ctx, env, conn, target)
            continue
        if not settings["DB_SPLIT_ALL"] and not exclude:
            yield target, _job(ctx, env, target, ["pg_dumpall"] + conn)
            continue
        try:
            every = list_all(env, conn)
        except PackratError as exc:
            yield None, dumps.failing(str(exc))
            continue
        names = dumps.select(every, SYSTEM_DATABASES, exclude)
        if not settings["DB_SPLIT_ALL"]:
            skipped = [n for n in every if n not in names]
            yield target, _job(ctx, env, target, ["pg_dumpall"] + conn +
                       ["--exclude-database=" + exclude_pattern(n) for n in skipped])
            continue
        yield GLOBALS_NAME, _job(ctx, env, GLOBALS_NAME,
                                       ["pg_dumpall"] + conn + ["--globals-only"], whole=True)
        for name in names:
            # a database named all.globals fails in _job (reserved), loudly
            yield (None if name == GLOBALS_NAME else name), _pg_dump(ctx, env, conn, name)


def backup(ctx):
    if not ctx.dry_run:
        dumps.require(ctx.settings, "postgresql", _programs(ctx.settings))
    with connection(ctx.settings) as conn_env:
        env, conn = conn_env
        return dumps.run_jobs(dumps.once(jobs(ctx, env, conn)))
