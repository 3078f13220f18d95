"""The command line: the original's flags, read by the standard library's
``getopt`` as the original's getopts read them (``-vP``, ``-m a,b``,
``-cFILE``, ``--``), then an optional action word. cli.py only parses and
dispatches: each action is ``pypackrat.actions.NAME.main(ctx, args)``; with
no action word, the nightly run (``pypackrat.actions.run``).

Heavy imports wait until they are needed, so ``packrat -h`` stays fast.
"""
import getopt
import os
import re
import sys

from pypackrat import __version__

# The flags, actions and exit statuses: the help below and the man page
# packrat(8) (pypackrat/manpages.py) are made from these tables.
OPTIONS = (  # (flag, its argument, meaning)
    ("-c", "FILE", "configuration file (default: /etc/packrat.conf)"),
    ("-h", "", "show this help and exit"),
    ("-v", "", "verbose: print progress and the commands that run"),
    ("-n", "", "dry run: print what would be purged, made and uploaded, and the commands, "
               "changing nothing anywhere"),
    ("-P", "", "purge old archives (local, then remote) and exit"),
    ("-p", "DAYS", "purge local archives older than DAYS (PURGE_LOCAL_ARCHIVES)"),
    ("-r", "DAYS", "purge remote archives older than DAYS (PURGE_REMOTE_ARCHIVES)"),
    ("-m", "a,b", "backup modules to run (BACKUP_MODULES)"),
    ("-u", "a,b", "upload modules to run (UPLOAD_MODULES)"),
    ("-U", "YYYYMMDD", "upload stage only: upload every file in BACKUP_DIR whose name contains that date"),
    ("--version", "", "print the version and exit"),
)
ACTION_HELP = (  # (action, meaning); none: the nightly run
    ("check", "validate the configuration and print the effective settings"),
    ("list", "show the archives and dumps, local and remote, and problems"),
    ("restore", "restore a directory or a database as of a date"),
    ("verify", "test the newest archives (or --date), local and remote"),
)
EXIT_STATUS = (
    (0, "success"),
    (1, "failure (mailed to ADMIN_EMAIL)"),
    (75, "another run holds the lock"),
    (130, "interrupted (Control-C)"),
    (143, "stopped by SIGTERM (mailed)"),
)
SYNOPSIS = ("[-hvnP] [-c config_file] [-p days] [-r days] [-m modules]",
            "[-u modules] [-U YYYYMMDD] [action [options]]")
DESCRIPTION = ("Packrat backs up directories (dar), MySQL and PostgreSQL databases, uploads "
               "the archives over SSH, FTP, S3 or to a directory, and purges old ones.")


def _usage():
    import textwrap

    def item(name, text):  # "  -U YYYYMMDD  meaning": 15 columns before it
        return textwrap.wrap(text, 78, initial_indent="  %-13s" % name,
                             subsequent_indent=" " * 15, break_on_hyphens=False)
    lines = ["Usage: packrat " + SYNOPSIS[0], "               " + SYNOPSIS[1], ""]
    lines += textwrap.wrap(DESCRIPTION, 76) + ["", "Options:"]
    for flag, arg, text in OPTIONS:
        lines += item(("%s %s" % (flag, arg)).strip(), text)
    lines += ["", "Actions (none: the nightly run):"]
    for name, text in ACTION_HELP:
        lines += item(name, text)
    lines.append("")
    lines += textwrap.wrap("Exit status: " + ", ".join("%d %s" % pair for pair in EXIT_STATUS)
                           + '. "packrat ACTION --help" describes an action.', 76)
    return "\n".join(lines) + "\n"


USAGE = _usage()

ACTIONS = ("check", "list", "restore", "verify")  # pypackrat/actions/NAME.py
NIGHTLY = "run"  # pypackrat/actions/run.py: no action word

SHORT = "c:hvnPp:r:m:u:U:"  # the original's getopts string
LONG = ["help", "version"]
_FLAGS = {"-v": "verbose", "-P": "purge_only", "-n": "dry_run"}


class UsageError(Exception):
    pass


def parse(argv):
    """Parse as getopts did: flags may be combined, an option's argument
    may be attached (-p10) or the next word; parsing stops at the first
    word that is not an option (the action) or after ``--``."""
    from pypackrat.context import Options
    opts = Options()
    argv = list(argv)
    error = None
    try:
        pairs, rest = getopt.getopt(argv, SHORT, LONG)
    except getopt.GetoptError as exc:
        if "requires argument" in exc.msg:
            error = UsageError("option requires an argument -- %s" % exc.opt)
        else:
            error = UsageError("illegal option -- %s" % exc.opt)
        # getopts reads one option at a time: -h before the bad word is help
        pairs, rest = _read_before_error(argv), []
    for option, value in pairs:
        if option in ("-h", "--help"):
            opts.action = "help"
            return opts
        if option == "--version":
            opts.action = "version"
            return opts
        if option in _FLAGS:
            setattr(opts, _FLAGS[option], True)
        else:
            _set(opts, option[1], value)
    if error:
        raise error
    if rest:
        opts.action, opts.args = rest[0], rest[1:]
        if opts.action not in ACTIONS:
            raise UsageError("unknown action: %s" % opts.action)
    return opts


def _read_before_error(argv):
    """The options of the longest run of whole words before a bad one."""
    for end in range(len(argv) - 1, 0, -1):
        try:
            return getopt.getopt(argv[:end], SHORT, LONG)[0]
        except getopt.GetoptError:
            continue
    return []


def _days(letter, value):
    if not re.fullmatch(r"\d+", value):
        raise UsageError("-%s needs a whole number of days, not %r" % (letter, value))
    return int(value)


def _names(value):
    return [n for n in re.split(r"[,\s]+", value) if n]


def _set(opts, letter, value):
    """An option's argument, checked."""
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
        from pypackrat.core import names
        if not re.fullmatch(r"20\d{6}", value) or names.day(value) is None:
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
    stopping = []
    me = os.getpid()

    def terminate(signum, frame):
        if os.getpid() != me:  # a child between fork and exec: it ends as the program would
            os._exit(128 + signum)
        if stopping:  # a second SIGTERM: the stop under way goes on, bounded by its watchdog
            return
        stopping.append(signum)  # first: a SIGTERM caught while the watchdog starts returns above
        _stop_watchdog()
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    _relay_to_main(signal.SIGTERM, stopping)
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
    except ModuleNotFoundError as exc:  # packrat run by a Python without its packages
        if not exc.name or exc.name.partition(".")[0] == "pypackrat":
            raise
        sys.stderr.write("packrat: the Python package %s is not installed for %s; install.sh installs "
                         "packrat with the packages it needs\n" % (exc.name, sys.executable))
        return 1


RESEND = 0.05  # seconds: how long the relay of _relay_to_main gives the main thread to take a signal
_relay = {}  # the relay of _relay_to_main, started once per process: its thread, and the run's "handled"


def _relay_to_main(signum, handled):
    """Make sure the main thread runs the handler of ``signum``. The kernel
    gives a signal for the process to any thread that does not block it:
    another one while the main thread blocks it (execute._start, over a
    fork), or when it was sent to a thread's id. Python runs handlers in
    the main thread only, and a signal caught by another thread leaves the
    main thread asleep in a blocking call (a wait for dar, a lock) without
    running the handler (a SIGTERM that never stops the run). So the
    signal handler's wake-up byte goes to a pipe a thread of its own reads,
    and until the handler has run (``handled`` non-empty) that thread sends
    the signal again to the main thread, whose blocking call the kernel
    then interrupts: after RESEND seconds, and every RESEND seconds (sent at
    once, a storm of them would run the handler inside itself again and
    again, to a RecursionError)."""
    import contextlib
    import select
    import signal
    import threading
    import time
    _relay["handled"] = handled
    if "thread" in _relay:
        return
    main_thread = threading.main_thread().ident
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def relay():
        signal.pthread_sigmask(signal.SIG_BLOCK, [signum])  # never this thread's to catch
        while True:
            select.select([read_end], [], [])
            try:
                caught = os.read(read_end, 512)
            except BlockingIOError:
                continue
            while signum in caught and not _relay["handled"]:
                time.sleep(RESEND)  # the main thread, awake, runs the handler meanwhile
                if not _relay["handled"]:
                    signal.pthread_kill(main_thread, signum)
                with contextlib.suppress(BlockingIOError):
                    os.read(read_end, 512)  # the wake-up bytes of the signals sent here

    _relay["thread"] = threading.Thread(target=relay, name="packrat-signals", daemon=True)
    _relay["thread"].start()


STOP_GRACE = 100  # seconds: the uploads get 60 to stop, then the temporary copies and the mail


def _stop_watchdog():
    """After a SIGTERM, the run unwinds: uploads stopped, temporary copies
    removed, one mail. Should that hang (a server that stopped answering, a
    lock held where the signal landed), this thread ends the process after
    STOP_GRACE seconds (PACKRAT_STOP_GRACE): the programs it started die
    with it (PR_SET_PDEATHSIG), and cron's or systemd's stop is bounded."""
    import threading
    try:
        grace = float(os.environ.get("PACKRAT_STOP_GRACE") or STOP_GRACE)
    except ValueError:
        grace = STOP_GRACE

    def give_up():
        try:
            sys.stderr.write("packrat: terminated; the clean-up took more than %g s, given up\n" % grace)
            sys.stderr.flush()
        finally:
            os._exit(143)

    timer = threading.Timer(grace, give_up)
    timer.daemon = True
    timer.start()
    return timer


def _main(opts):
    """Load the configuration (the run's output first: every line masked),
    make the run object, dispatch."""
    import importlib
    from pypackrat import config, log
    from pypackrat.context import Context
    from pypackrat.errors import ConfigError, PackratError

    output = log.setup(verbose=opts.verbose)
    path = opts.config or os.environ.get("PACKRAT_CONFIG") or config.DEFAULT_CONFIG
    try:
        settings = config.load(path, overrides(opts), output=output)
    except ConfigError as exc:
        problems = [log.one_line(log.mask(line)) for line in exc.problems]
        for line in problems:
            sys.stderr.write(line + "\n")
        _check_json(opts, path, problems, getattr(exc, "settings", None))
        if _unattended(opts):  # at 3 a.m. nobody reads stderr
            from pypackrat import mail
            mail.config_failure(getattr(exc, "settings", None), path, problems)
        return 1
    except PackratError as exc:
        sys.stderr.write("packrat: %s\n" % log.mask(exc))
        _check_json(opts, path, ["packrat: %s" % log.one_line(log.mask(exc))])
        return 1
    try:
        ctx = Context(settings, opts)
    except PackratError as exc:
        sys.stderr.write("packrat: %s\n" % log.mask(exc))
        _check_json(opts, path, ["packrat: %s" % log.one_line(log.mask(exc))], settings)
        return 1
    if not opts.action and not opts.dry_run:  # the nightly run's lines go to LOG too
        _open_log(settings)
    action = importlib.import_module("pypackrat.actions." + (opts.action or NIGHTLY))
    if not opts.action:
        return action.main(ctx, opts.args)
    try:
        return action.main(ctx, opts.args)
    except PackratError as exc:
        sys.stderr.write("packrat %s: %s\n" % (opts.action, log.mask(exc)))
        return 1


def _check_json(opts, path, lines, settings=None):
    """`packrat check --json` of a configuration that did not load: its
    JSON document on stdout as well (pypackrat/actions/check.py)."""
    if opts.action == "check":
        from pypackrat.actions import check
        if check.wants_json(opts.args):
            check.invalid(path, lines, settings)


def _open_log(settings):
    """LOG's destination (syslog or a file); one that cannot be used safely
    is a warning: the backup matters more than its log."""
    from pypackrat import log
    from pypackrat.errors import PackratError
    try:
        log.open_destination(settings["LOG"])
    except PackratError as exc:
        log.warn("Warning: %s: %s; this run's lines go to the terminal and the mail only"
                 % (settings.where("LOG"), exc))


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
