"""``packrat check``: validate the configuration and print the effective
settings, where each came from, secrets masked."""
import argparse
import re

from pypackrat import config, log, plugins


def main(ctx, args):
    parser = argparse.ArgumentParser(
        prog="packrat check",
        description="Validate the configuration (packrat.conf and modules.d) and print "
                    "every effective setting, in the order of the declarations, with where it came from "
                    "(a file, the command line, or the built-in default); secrets are masked. "
                    "Exit 0 when valid, 1 with one line per problem otherwise. What this "
                    "machine lacks (a program, a directory) is a warning: that module fails "
                    "at run time, the others run.")
    parser.add_argument("--meanings", action="store_true",
                        help="show each setting's meaning above it (from its declaration)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout instead (fields: README, "
                             "\"Machine-readable output\"); also when the configuration is invalid")
    options = parser.parse_args(args)
    settings = ctx.settings
    if options.json:
        from pypackrat import report_schema
        with report_schema.stdout_for_json() as emit:
            emit(document(settings))
        return 0
    print(log.mask("# configuration %s: valid" % settings.path))
    for line in config.requirements(settings):
        log.warn("Warning: " + line)
    warning = _backup_dir_warning(settings["BACKUP_DIR"])
    if warning:
        log.warn(warning)
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in settings[key]:
            print(log.mask("# %s" % plugins.resolve(settings, name, role).describe()))
    for line in config.effective(settings, options.meanings):
        print(log.mask(line))  # a secret's value copied into another setting stays hidden
    return 0


def _backup_dir_warning(directory):
    """A warning (not an error) when BACKUP_DIR lets group or others in:
    archives are 0600, but their names, sizes and dates show, and a file
    someone else's tool writes there may not be private."""
    import os
    import stat
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return ("packrat check: warning: BACKUP_DIR %s is accessible to %s (mode %04o); "
                "packrat writes its files 0600, but make the directory private: chmod 700 %s"
                % (directory, "group and others" if mode & 0o070 and mode & 0o007
                   else "its group" if mode & 0o070 else "others", mode, directory))
    return None


# -- --json ----------------------------------------------------------------------

def _earlier_warnings():
    """The warnings printed while the configuration was read (typos of
    setting names, the file's own warnings), from the run's transcript."""
    return [line for line in log.transcript() if line.startswith("Warning: ")]


def document(settings):
    """``packrat check --json`` of a valid configuration: the fields of
    report_schema.CHECK. The warnings go to stderr as well."""
    from pypackrat import settings as declared
    warnings = _earlier_warnings()
    for line in config.requirements(settings):
        log.warn("Warning: " + line)
        warnings.append(log.mask("Warning: " + line))
    warning = _backup_dir_warning(settings["BACKUP_DIR"])
    if warning:
        log.warn(warning)
        warnings.append(log.mask(warning))
    modules = [{"name": name, "role": role,
                "description": plugins.resolve(settings, name, role).describe()}
               for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES"))
               for name in settings[key]]
    entries, seen = [], set()
    for _, group in declared.groups():
        for setting in group.settings:
            seen.add(setting.name)
            entries.append(_entry(settings, setting.name, True, group.title, setting.meaning))
    entries += [_entry(settings, name, False) for name in sorted(settings.values) if name not in seen]
    return {"version": 1, "action": "check", "exit_status": 0, "config": settings.path,
            "valid": True, "problems": [], "warnings": warnings, "modules": modules,
            "settings": entries}


def _is_masked(name):
    from pypackrat import settings as declared
    return config._looks_secret(name) or name in declared.MASKED


def _entry(settings, name, is_declared, group=None, meaning=None):
    value = settings.values.get(name)
    secret = _is_masked(name)
    if secret and value:
        value = "****"
    elif isinstance(value, (list, tuple)):
        value = [str(v) for v in value]
    elif not isinstance(value, (str, int, float, bool, type(None))):
        value = str(value)
    return {"name": name, "value": value, "origin": settings.where(name), "secret": secret,
            "declared": is_declared, "group": group, "meaning": meaning}


def wants_json(args):
    """Whether `packrat check ARGS` asks for --json."""
    return "--json" in args


def invalid(path, lines, settings=None):
    """``packrat check --json`` of a configuration that did not load (the
    command line calls it with the lines it printed on stderr): the JSON
    document on stdout, valid false, a problem per line."""
    from pypackrat import report_schema
    report_schema.emit({"version": 1, "action": "check", "exit_status": 1, "config": path,
                        "valid": False, "problems": [_problem(line, path, settings) for line in lines],
                        "warnings": _earlier_warnings(), "modules": [], "settings": []})


_WORD = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_])")


def _problem(line, path, settings=None):
    """A problem line as {setting, file, message}: the first known setting
    the line names, and the file it blames (the line's own prefix, the file
    it says the setting is missing from, or where the setting came from)."""
    from pypackrat import settings as declared
    known = {s.name for s in declared.declarations()}
    origin = dict(getattr(settings, "origin", None) or {})
    known |= set(origin) | set(getattr(settings, "raw", None) or {})
    setting = next((w for w in _WORD.findall(line) if w in known), None)
    places = {path, "command line"} | {o for o in origin.values() if o not in (None, "default")}
    blamed = next((p for p in sorted(places, key=len, reverse=True)
                   if p and line.startswith(p + ":")), None)
    if blamed is None:
        found = re.search(r" is not defined in (.+?)(?: \(it is empty\))?$", line)
        blamed = found.group(1) if found else None
    if blamed is None and path and path in line:
        blamed = path
    if blamed is None and setting and settings is not None:
        where = settings.where(setting)
        blamed = None if where == "the built-in default" else where
    return {"setting": setting, "file": blamed, "message": line}
