"""The command line: the original's flags, getopts style (``-vP``,
``-m a,b``, ``-cFILE``), then an optional action word.

With no action word it is the nightly run, as before. Heavy imports wait
until they are needed, so ``packrat -h`` stays fast.
"""
import os
import re
import sys

from pypackrat import __version__

USAGE = """\
Usage: packrat [-hvnP] [-c config_file] [-p days] [-r days] [-m modules]
               [-u modules] [-U YYYYMMDD] [action [options]]

Packrat backs up directories (dar), MySQL and PostgreSQL databases, uploads
the archives over SSH, FTP, S3 or to a directory, and purges old ones.

Options:
  -c FILE      configuration file (default: /etc/packrat.conf)
  -h           show this help and exit
  -v           verbose: print progress and the commands that run
  -n           dry run: print what would be purged, made and uploaded,
               and the commands, changing nothing anywhere
  -P           purge old archives (local, then remote) and exit
  -p DAYS      purge local archives older than DAYS (PURGE_LOCAL_ARCHIVES)
  -r DAYS      purge remote archives older than DAYS (PURGE_REMOTE_ARCHIVES)
  -m a,b       backup modules to run (BACKUP_MODULES)
  -u a,b       upload modules to run (UPLOAD_MODULES)
  -U YYYYMMDD  upload stage only: upload every file in BACKUP_DIR whose
               name contains that date
  --version    print the version and exit

Actions (none: the nightly run):
  check        validate the configuration and print the effective settings
  list         show the archives and dumps, local and remote, and problems
  restore      restore a directory or a database as of a date
  verify       test the newest archives (or --date), local and remote

Exit status: 0 success, 1 failure (mailed to ADMIN_EMAIL), 75 another run
holds the lock, 143 stopped by SIGTERM (mailed). "packrat ACTION --help" describes an action.
"""

ACTIONS = ("check", "list", "restore", "verify")  # pypackrat/actions/NAME.py

_WITH_ARG = "cprmuU"
_FLAGS = "hvPn"


class UsageError(Exception):
    pass


def parse(argv):
    """Parse like getopts: flags may be combined, an option's argument may
    be attached (-p10) or the next word; parsing stops at the first word
    that is not an option (the action) or after ``--``."""
    from pypackrat.context import Options
    opts = Options()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word in ("--help",):
            opts.action = "help"
            return opts
        if word == "--version":
            opts.action = "version"
            return opts
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            raise UsageError("illegal option -- %s" % word[2:])
        j = 1
        while j < len(word):
            letter = word[j]
            if letter in _FLAGS:
                if letter == "h":
                    opts.action = "help"
                    return opts
                setattr(opts, {"v": "verbose", "P": "purge_only", "n": "dry_run"}[letter], True)
                j += 1
                continue
            if letter not in _WITH_ARG:
                raise UsageError("illegal option -- %s" % letter)
            value = word[j + 1:]
            if not value:
                i += 1
                if i >= len(argv):
                    raise UsageError("option requires an argument -- %s" % letter)
                value = argv[i]
            _set(opts, letter, value)
            break
        i += 1
    rest = argv[i:]
    if rest:
        opts.action, opts.args = rest[0], rest[1:]
        if opts.action not in ACTIONS:
            raise UsageError("unknown action: %s" % opts.action)
    return opts


def _days(letter, value):
    if not re.fullmatch(r"\d+", value):
        raise UsageError("-%s needs a whole number of days, not %r" % (letter, value))
    return int(value)


def _names(value):
    return [n for n in re.split(r"[,\s]+", value) if n]


def _set(opts, letter, value):
    if letter == "c":
        opts.config = value
    elif letter == "p":
        opts.purge_local = _days(letter, value)
    elif letter == "r":
        opts.purge_remote = _days(letter, value)
    elif letter == "m":
        opts.backup_modules = _names(value)
    elif letter == "u":
        opts.upload_modules = _names(value)
    elif letter == "U":
        if not re.fullmatch(r"20\d{6}", value):
            raise UsageError("-U needs a date as YYYYMMDD, not %r" % value)
        opts.upload_date = value


def overrides(opts):
    out = {}
    if opts.purge_local is not None:
        out["PURGE_LOCAL_ARCHIVES"] = str(opts.purge_local)
    if opts.purge_remote is not None:
        out["PURGE_REMOTE_ARCHIVES"] = str(opts.purge_remote)
    if opts.backup_modules is not None:
        out["BACKUP_MODULES"] = opts.backup_modules
    if opts.upload_modules is not None:
        out["UPLOAD_MODULES"] = opts.upload_modules
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    os.umask(0o077)  # archives, dumps, temporaries: 0600, whatever BACKUP_DIR's mode
    try:
        opts = parse(argv)
    except UsageError as exc:
        sys.stderr.write("packrat: %s\n%s" % (exc, USAGE))
        return 1
    if opts.action == "help":
        sys.stdout.write(USAGE)
        return 0
    if opts.action == "version":
        print("packrat %s" % __version__)
        return 0
    import signal
    from pypackrat.errors import Terminated

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        return _main(opts)
    except Terminated:
        sys.stderr.write("packrat: terminated\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write("packrat: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


def _main(opts):
    from pypackrat import config, execute, log
    from pypackrat.errors import ConfigError, LockedError, PackratError, Terminated

    log.set_verbose(opts.verbose)
    execute.set_dry_run(opts.dry_run)
    path = opts.config or os.environ.get("PACKRAT_CONFIG") or config.DEFAULT_CONFIG
    try:
        settings = config.load(path, overrides(opts))
    except ConfigError as exc:
        problems = [_one_line(log.mask(line)) for line in exc.problems]
        for line in problems:
            sys.stderr.write(line + "\n")
        if _unattended(opts):  # at 3 a.m. nobody reads stderr
            from pypackrat import mail
            mail.config_failure(getattr(exc, "settings", None), path, problems)
        return 1
    except PackratError as exc:
        sys.stderr.write("packrat: %s\n" % log.mask(exc))
        return 1

    from pypackrat.context import Context
    from pypackrat import run
    try:
        ctx = Context(settings, opts)
    except PackratError as exc:
        sys.stderr.write("packrat: %s\n" % log.mask(exc))
        return 1

    if opts.action:
        import importlib
        command = importlib.import_module("pypackrat.actions." + opts.action)
        try:
            return command.main(ctx, opts.args)
        except PackratError as exc:
            sys.stderr.write("packrat %s: %s\n" % (opts.action, log.mask(exc)))
            return 1

    if opts.dry_run:
        _show_plan(ctx)
        return run.report(ctx, run.nightly(ctx))
    try:
        with run.lock(settings["LOCK_FILE"]):
            errors = run.nightly(ctx)
    except LockedError as exc:
        sys.stderr.write("packrat: %s\n" % exc)
        from pypackrat import mail
        mail.failure(settings, [str(exc)])
        return run.EXIT_LOCKED
    except Terminated:
        errors = ["packrat was stopped (SIGTERM) before the run ended; no file of the "
                  "unfinished step was left under its final name"]
        log.error(errors[0])
        run.report(ctx, errors)
        return 143
    except OSError as exc:
        errors = ["cannot take the lock %s: %s" % (settings["LOCK_FILE"], exc)]
        log.error(errors[0])
    except Exception as exc:  # never a traceback at 3 a.m.: one line, mailed
        errors = ["internal error: %s: %s" % (type(exc).__name__, log.mask(exc))]
        log.error(errors[0])
    return run.report(ctx, errors)


def _one_line(text):
    """A message as one line: control characters shown as escapes."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def _unattended(opts):
    """A nightly run with nobody at a terminal (cron, a systemd timer): its
    configuration errors are mailed too. Not `check` nor another action,
    not a dry run, not a run typed at a terminal."""
    if opts.action or opts.dry_run:
        return False
    try:
        return not (sys.stderr.isatty() and sys.stdin.isatty())
    except (ValueError, AttributeError):  # closed or missing streams
        return True


def _show_plan(ctx):
    from pypackrat import config, log, plugins
    log.info("[dry run] config %s, host %s, date %s, BACKUP_DIR %s"
             % (ctx.settings.path, ctx.hostname, ctx.today, ctx.backup_dir))
    for line in config.requirements(ctx.settings):
        log.warn("Warning: " + line)
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in ctx.settings[key]:
            resolved = plugins.resolve(ctx.settings, name, role)
            log.info("[dry run] %s" % resolved.describe())
