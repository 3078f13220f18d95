"""The nightly run (``packrat`` with no action word): under the lock,
purge, back up, upload (pypackrat/run.py does the steps); the failures
mailed once. With -n: the plan, then the run's steps as a dry run, no lock.
"""
from pypackrat import config, hooks, log, mail, monitor, plugins, run
from pypackrat.errors import LockedError, Terminated


def main(ctx, args):
    from pypackrat.execute import polite
    polite(ctx)  # NICE, IONICE: for packrat and every program it starts
    monitor.record_of(ctx)  # the run's record: what the reports, metrics and ping tell
    monitor.protect(ctx)  # PING_URL is masked from the first line on
    if ctx.dry_run:
        show_plan(ctx)
        errors = night(ctx)
        return 0 if errors is None else finish(ctx, errors)
    settings = ctx.settings
    try:
        with run.lock(settings["LOCK_FILE"]):
            errors = night(ctx)
            if errors is None:
                return 0
            return finish(ctx, errors)
    except LockedError as exc:
        log.error("packrat: %s" % exc)
        mail.failure(settings, [str(exc)])
        return run.EXIT_LOCKED
    except Terminated:
        errors = ["packrat was stopped (SIGTERM) before the run ended; no file of the "
                  "unfinished step was left under its final name"]
        log.error(errors[0])
        finish(ctx, errors, hooks_too=False)
        return 143
    except OSError as exc:
        errors = ["cannot take the lock %s: %s" % (settings["LOCK_FILE"], exc)]
        log.error(errors[0])
    except Exception as exc:  # never a traceback at 3 a.m.: one line, mailed
        errors = ["internal error: %s: %s" % (type(exc).__name__, log.mask(exc))]
        log.error(errors[0])
    return finish(ctx, errors, hooks_too=False)


def night(ctx):
    """The pre-hook, the start ping, the run: its failure messages, or None
    when the pre-hook skipped the night (exit status 75)."""
    errors = []
    try:
        failed = hooks.pre(ctx)
    except hooks.Skip:
        log.verbose("PRE_BACKUP_COMMAND exited with status 75: tonight's run is skipped")
        return None
    if failed:  # before anything is made, the purge included
        log.error(failed)
        monitor.record_of(ctx).pre_failed = True
        return [failed]
    problem = monitor.check_ping(ctx)
    if problem:
        log.error(problem)
        errors.append(problem)
    monitor.ping(ctx, "start")
    return errors + run.nightly(ctx)


def finish(ctx, errors, hooks_too=True):
    """After the run: the post-hook, the on-error hook, the mail (MAIL_ON),
    the metrics, the final ping. Returns the exit status."""
    record = monitor.record_of(ctx)
    errors = list(errors)
    if hooks_too and not record.pre_failed:
        failed = _guarded(hooks.post, ctx, ctx.new_backups, errors)
        if failed:
            log.error(failed)
            errors.append(failed)
    status = 1 if errors else 0
    if errors and hooks_too:
        failed = _guarded(hooks.on_error, ctx, ctx.new_backups, errors, status)
        if failed:
            log.error(failed)
            errors.append(failed)
    code = run.report(ctx, errors)
    record.finish(code)
    for function, args in ((monitor.write_metrics, (ctx, record)),
                           (monitor.ping, (ctx, "fail", monitor.tail()) if errors else (ctx, "success"))):
        failed = _guarded(function, *args)
        if isinstance(failed, str):  # monitoring never fails the backup
            log.warn("Warning: %s" % failed)
    return code


def _guarded(function, *args):
    """A step after the run that must not stop the others: its exception
    becomes its message."""
    try:
        return function(*args)
    except Exception as exc:
        return "%s: %s: %s" % (function.__name__, type(exc).__name__, log.mask(exc))


def show_plan(ctx):
    """What a dry run will do: the config, the date, each module."""
    log.info("[dry run] config %s, host %s, date %s, BACKUP_DIR %s"
             % (ctx.settings.path, ctx.hostname, ctx.today, ctx.backup_dir))
    for line in config.requirements(ctx.settings):
        log.warn("Warning: " + line)
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in ctx.settings[key]:
            log.info("[dry run] %s" % plugins.resolve(ctx.settings, name, role).describe())
    if not ctx.options.purge_only:  # the order of the night: which files go where, and when
        for line in run.Uploads(ctx).plan():
            log.info("[dry run] " + line)
