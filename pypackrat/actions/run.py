"""The nightly run (``packrat`` with no action word): under the lock,
purge, back up, upload (pypackrat/run.py does the steps); the failures
mailed once. With -n: the plan, then the run's steps as a dry run, no lock.
"""
from pypackrat import config, log, mail, plugins, run
from pypackrat.errors import LockedError, Terminated


def main(ctx, args):
    if ctx.dry_run:
        show_plan(ctx)
        return run.report(ctx, run.nightly(ctx))
    settings = ctx.settings
    try:
        with run.lock(settings["LOCK_FILE"]):
            errors = run.nightly(ctx)
    except LockedError as exc:
        log.error("packrat: %s" % exc)
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


def show_plan(ctx):
    """What a dry run will do: the config, the date, each module."""
    log.info("[dry run] config %s, host %s, date %s, BACKUP_DIR %s"
             % (ctx.settings.path, ctx.hostname, ctx.today, ctx.backup_dir))
    for line in config.requirements(ctx.settings):
        log.warn("Warning: " + line)
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in ctx.settings[key]:
            log.info("[dry run] %s" % plugins.resolve(ctx.settings, name, role).describe())
