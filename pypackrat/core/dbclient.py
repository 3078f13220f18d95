"""Handing a database client its server and password: never in argv, never on disk.

What the database modules (pypackrat/backup/mysql.py, postgresql.py) need
to dump, and ``packrat restore`` to load, once: ``mysql(settings)`` yields
the connection arguments of mysql and mysqldump (a password goes into an
option file held in memory, ``--defaults-file=/dev/fd/N``, bound to
MYSQL_USER, MYSQL_HOST and MYSQL_PORT); ``postgresql(settings)`` yields the
environment and arguments of psql, pg_dump and pg_dumpall (a password goes
into a password file held in memory, PGPASSFILE=/dev/fd/N, whose lines
match the configured server only); ``dbname_arg`` names a database to
libpq as data, never as an option or a server.
"""
import contextlib
import os

from pypackrat import execute, log


def _options(settings, flags):
    """``[FLAG, value]`` for each (FLAG, NAME) of ``flags`` whose setting is
    set: the user, host and port a client is told on its command line."""
    args = []
    for flag, name in flags:
        if settings[name]:
            args += [flag, str(settings[name])]
    return args


# -- MySQL / MariaDB -------------------------------------------------------------

# the files a client reads before ~/.my.cnf (mysys' default search list)
GLOBAL_OPTION_FILES = ("/etc/my.cnf", "/etc/mysql/my.cnf")


def option_value(text):
    """A value as a MySQL option file reads it: double-quoted, escaped."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return '"%s"' % escaped


def option_file(password, includes=GLOBAL_OPTION_FILES, user="", host="", port=None):
    """The option file: the system-wide files, then a [client] section
    that binds the password to the configured user, host and port (read
    last, so it wins over the included files)."""
    lines = ["# written by packrat for one run, never on disk"]
    lines += ["!include %s" % path for path in includes
              if os.path.isfile(path) and os.access(path, os.R_OK)]
    lines += ["[client]"]
    if user:
        lines.append("user=%s" % option_value(user))
    if host:
        lines.append("host=%s" % option_value(host))
    if port:
        lines.append("port=%d" % int(port))
    lines += ["password=%s" % option_value(password), ""]
    return "\n".join(lines)


@contextlib.contextmanager
def mysql(settings):
    """Yield the connection arguments for mysql and mysqldump: with a
    password, only ``--defaults-file=/dev/fd/N`` (an in-memory option file
    with user, host, port and password; execute.run and execute.pipeline
    pass its descriptor to the commands that name it); without one,
    ``-u``/``-h``/``-P`` as set."""
    with contextlib.ExitStack() as stack:
        password = settings["MYSQL_PASS"]
        if password:
            log.add_secret(password)
            text = option_file(password, user=settings["MYSQL_USER"], host=settings["MYSQL_HOST"],
                               port=settings["MYSQL_PORT"])
            path = stack.enter_context(execute.secret_path(text, "my.cnf"))
            yield ["--defaults-file=" + path]
            return
        yield _options(settings, (("-u", "MYSQL_USER"), ("-h", "MYSQL_HOST"), ("-P", "MYSQL_PORT")))


# -- PostgreSQL -----------------------------------------------------------------

# libpq's rules for matching a password file line: an empty host and its
# default socket directory read as "localhost"; an empty port as 5432
DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")


def _pgpass_field(text):
    return text.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_lines(password, host="", port=None, user=""):
    """Password file lines valid for the configured server only: its host
    (or hosts, comma-separated), its port, POSTGRESQL_USER (any user when
    empty), any database. Host and port as libpq will see them: the setting,
    else PGHOST / PGPORT, else the socket ("localhost") and 5432."""
    host = host or os.environ.get("PGHOST", "")
    port = str(port or os.environ.get("PGPORT", "") or "5432")
    hosts = host.split(",") if host else [""]
    ports = port.split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    lines = []
    for h, p in zip(hosts, ports):
        h, p = h.strip(), p.strip() or "5432"
        names = []
        if not h:
            names.append("localhost")
        elif h.startswith("/") or h.startswith("@"):  # a socket directory
            names.append(h)
            if h.rstrip("/") in DEFAULT_SOCKET_DIRS:
                names.append("localhost")
        else:
            names.append(h)
        for name in names:
            line = "%s:%s:*:%s:%s\n" % (_pgpass_field(name), _pgpass_field(p),
                                        _pgpass_field(user) if user else "*", _pgpass_field(password))
            if line not in lines:
                lines.append(line)
    return "".join(lines)


def dbname_arg(database):
    """``--dbname=`` with a connection string that holds the name alone,
    quoted as libpq reads it (backslash and single quote escaped)."""
    return "--dbname=dbname='%s'" % database.replace("\\", "\\\\").replace("'", "\\'")


@contextlib.contextmanager
def postgresql(settings):
    """Yield (environment, connection arguments) for psql, pg_dump, pg_dumpall.
    The password file is ``/dev/fd/N`` in PGPASSFILE: execute.run and
    execute.pipeline pass its descriptor to the commands given that env."""
    env, args = {}, ["-w"]
    with contextlib.ExitStack() as stack:
        password = settings["POSTGRESQL_PASS"]
        if password:
            log.add_secret(password)
            text = pgpass_lines(password, settings["POSTGRESQL_HOST"], settings["POSTGRESQL_PORT"],
                                settings["POSTGRESQL_USER"])
            env["PGPASSFILE"] = stack.enter_context(execute.secret_path(text, "pgpass"))
        args += _options(settings, (("-U", "POSTGRESQL_USER"), ("-h", "POSTGRESQL_HOST"),
                                    ("-p", "POSTGRESQL_PORT")))
        yield env, args
