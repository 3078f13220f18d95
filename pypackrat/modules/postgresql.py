"""Backup module ``postgresql``: PostgreSQL dumps with pg_dump / pg_dumpall.

Each database of POSTGRESQL_TARGETS becomes
``HOST-postgresql-DB-TODAY.sql.bz2`` (``pg_dump``, plain SQL); ``__ALL__``
becomes ``HOST-postgresql-all-TODAY.sql.bz2`` (``pg_dumpall``, without the
databases of POSTGRESQL_EXCLUDE), or with DB_SPLIT_ALL=yes one per-database
file for each database plus ``HOST-postgresql-all.globals-TODAY.sql.bz2``
(``pg_dumpall --globals-only``: roles, tablespaces).

The password (new setting POSTGRESQL_PASS) goes into a 0600 password file
for the run, named by the PGPASSFILE environment variable; never argv. With
POSTGRESQL_PASS empty, authentication is as before (peer, trust, the
user's own ~/.pgpass). ``-w``: never wait for a password prompt.
"""
import contextlib

from pypackrat import dumps, execute, log
from pypackrat.errors import PackratError

TAG = "[POSTGRESQL]"
ENGINE = "postgresql"
LIST_QUERY = ("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
              "ORDER BY datname")
SYSTEM_DATABASES = {"template0", "template1"}


def check(settings):
    problems = []
    if not settings["POSTGRESQL_TARGETS"]:
        problems.append("%s: POSTGRESQL_TARGETS is empty, but the postgresql backup module is enabled"
                        % dumps.where(settings, "POSTGRESQL_TARGETS"))
    password = settings["POSTGRESQL_PASS"]
    if password and ("\n" in password or "\r" in password):
        problems.append("%s: POSTGRESQL_PASS holds a line break, which a password file cannot hold"
                        % dumps.where(settings, "POSTGRESQL_PASS"))
    return problems + dumps.check(settings)


def pgpass_line(password):
    """A password file line matching every host, port, database and user."""
    return "*:*:*:*:%s\n" % password.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def connection(settings):
    """Yield (environment, connection arguments) for psql, pg_dump, pg_dumpall."""
    env, args = {}, ["-w"]
    with contextlib.ExitStack() as stack:
        password = settings["POSTGRESQL_PASS"]
        if password:
            log.add_secret(password)
            env["PGPASSFILE"] = stack.enter_context(execute.secret_file(pgpass_line(password), "pgpass"))
        if settings["POSTGRESQL_USER"]:
            args += ["-U", settings["POSTGRESQL_USER"]]
        if settings["POSTGRESQL_HOST"]:
            args += ["-h", settings["POSTGRESQL_HOST"]]
        if settings["POSTGRESQL_PORT"]:
            args += ["-p", str(settings["POSTGRESQL_PORT"])]
        yield env, args


def list_all(env, conn):
    """Every database that accepts connections, templates left out."""
    try:
        result = execute.run(["psql", "-X"] + conn + ["-d", "postgres", "-A", "-t", "-0", "-c", LIST_QUERY],
                             env=env, changes=False)
    except PackratError as exc:
        raise PackratError("postgresql: cannot list the databases: %s" % exc) from None
    return [name for name in result.out.split("\0") if name.strip("\n")]


def exclude_pattern(name):
    """pg_dumpall --exclude-database takes a pattern; double quotes make it literal."""
    return '"%s"' % name.replace('"', '""')


def _job(ctx, env, database, argv):
    def job():
        log.verbose("%s backup up database: %s" % (TAG, database))
        return dumps.dump(ctx, database, ENGINE, argv, env=env)
    return job


def jobs(ctx, env, conn):
    settings = ctx.settings
    exclude = settings["POSTGRESQL_EXCLUDE"]
    for target in settings["POSTGRESQL_TARGETS"]:
        if target != dumps.ALL:
            yield target, _job(ctx, env, target, ["pg_dump"] + conn + [target])
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
        if dumps.GLOBALS_NAME in names:
            yield None, dumps.failing("postgresql: a database is named %r, the name of the globals dump of "
                                "DB_SPLIT_ALL; dump it by name without DB_SPLIT_ALL" % dumps.GLOBALS_NAME)
            names.remove(dumps.GLOBALS_NAME)
        yield dumps.GLOBALS_NAME, _job(ctx, env, dumps.GLOBALS_NAME,
                                       ["pg_dumpall"] + conn + ["--globals-only"])
        for name in names:
            yield name, _job(ctx, env, name, ["pg_dump"] + conn + [name])


def backup(ctx):
    with connection(ctx.settings) as conn_env:
        env, conn = conn_env
        return dumps.run_jobs(dumps.once(jobs(ctx, env, conn)))
