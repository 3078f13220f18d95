"""Backup module ``mysql``: MySQL/MariaDB dumps with mysqldump.

Each database of MYSQL_TARGETS becomes ``HOST-mysql-DB-TODAY.sql.bz2``;
``__ALL__`` becomes ``HOST-mysql-all-TODAY.sql.bz2`` (``mysqldump -A``, or
``--databases`` with the listed databases when MYSQL_EXCLUDE is set), or
with DB_SPLIT_ALL=yes one per-database file for each database.

The password (MYSQL_PASS) is written to a 0600 option file for the run and
given as ``--defaults-file`` (first argument), so it is never in argv and a
``~/.my.cnf`` cannot override it; the option file includes the system-wide
option files first, so their settings (socket, max_allowed_packet...) still
apply. With MYSQL_PASS empty nothing changes: the client reads its usual
files, ``~/.my.cnf`` included, as the original did.
"""
import contextlib
import os

from pypackrat import dumps, execute, log
from pypackrat.errors import PackratError

TAG = "[MYSQL]"
ENGINE = "mysql"
SYSTEM_SCHEMAS = {"information_schema", "performance_schema", "sys"}
# the files a client reads before ~/.my.cnf (mysys' default search list)
GLOBAL_OPTION_FILES = ("/etc/my.cnf", "/etc/mysql/my.cnf")


def check(settings):
    problems = []
    if not settings["MYSQL_TARGETS"]:
        problems.append("%s: MYSQL_TARGETS is empty, but the mysql backup module is enabled"
                        % dumps.where(settings, "MYSQL_TARGETS"))
    return problems + dumps.check(settings)


def option_value(text):
    """A value as a MySQL option file reads it: double-quoted, escaped."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return '"%s"' % escaped


def option_file(password, includes=GLOBAL_OPTION_FILES):
    lines = ["# written by packrat for one run, removed after it"]
    lines += ["!include %s" % path for path in includes
              if os.path.isfile(path) and os.access(path, os.R_OK)]
    lines += ["[client]", "password=%s" % option_value(password), ""]
    return "\n".join(lines)


@contextlib.contextmanager
def connection(settings):
    """Yield the connection arguments for mysql and mysqldump; the first
    one is ``--defaults-file=...`` when a password is set."""
    args = []
    with contextlib.ExitStack() as stack:
        password = settings["MYSQL_PASS"]
        if password:
            log.add_secret(password)
            path = stack.enter_context(execute.secret_file(option_file(password), "my.cnf"))
            args.append("--defaults-file=" + path)
        if settings["MYSQL_USER"]:
            args += ["-u", settings["MYSQL_USER"]]
        if settings["MYSQL_HOST"]:
            args += ["-h", settings["MYSQL_HOST"]]
        if settings["MYSQL_PORT"]:
            args += ["-P", str(settings["MYSQL_PORT"])]
        yield args


def list_databases(settings, conn):
    """The databases __ALL__ covers (SHOW DATABASES without the system
    schemas and MYSQL_EXCLUDE)."""
    try:
        argv = [dumps.program("mysql", "mariadb")] + conn + ["-N", "-B", "-e", "SHOW DATABASES"]
        result = execute.run(argv, changes=False)
    except PackratError as exc:
        raise PackratError("mysql: cannot list the databases: %s" % exc) from None
    names = [line for line in result.out.split("\n") if line]
    return dumps.select(names, SYSTEM_SCHEMAS, settings["MYSQL_EXCLUDE"])


def _job(ctx, conn, database, what):
    def job():
        log.verbose("%s backup up database: %s" % (TAG, database))
        argv = [dumps.program("mysqldump", "mariadb-dump")] + conn + ["--opt"] + what
        return dumps.dump(ctx, database, ENGINE, argv)
    return job


def jobs(ctx, conn):
    settings = ctx.settings
    for target in settings["MYSQL_TARGETS"]:
        if target != dumps.ALL:
            yield target, _job(ctx, conn, target, [target])
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
                yield name, _job(ctx, conn, name, [name])
        elif names:
            yield target, _job(ctx, conn, target, ["--databases"] + names)
        else:
            yield None, dumps.failing("mysql: __ALL__ with MYSQL_EXCLUDE leaves no database to dump")


def backup(ctx):
    with connection(ctx.settings) as conn:
        return dumps.run_jobs(dumps.once(jobs(ctx, conn)))
