"""The name-to-module table, and which implementation a name runs.

A backup module (one file here) provides::

    check(settings) -> [problem, ...]   # its values, when the module is enabled
    requirements(settings) -> [line]    # optional: programs, directories it lacks
    backup(ctx) -> [path, ...]          # the archives it made, final names

An upload module provides ``check(settings)``, optionally ``requirements``,
and ``Remote``, a subclass of ``pypackrat.transfer.Remote`` (put, list,
delete, ...). ``check`` finds configuration errors (the run refuses to
start); ``requirements`` finds what this machine lacks (that module fails at
run time, the others run). Messages name the file to edit:
``settings.where(NAME, role)``.

A name with a Python port runs the port; a name without one runs the Bash
module of MODULE_PATH that defines ``mod_NAME``; a name listed in
SHELL_MODULES runs its Bash module even where a port exists.
"""
import importlib

BACKUP = {
    "filesystem": "pypackrat.modules.filesystem",
    "mysql": "pypackrat.modules.mysql",
    "postgresql": "pypackrat.modules.postgresql",
}
UPLOAD = {
    "local": "pypackrat.modules.local",
    "ssh": "pypackrat.modules.ssh",
    "ftp": "pypackrat.modules.ftp",
    "s3": "pypackrat.modules.s3",
}


class Resolved:
    """Where a module name leads: ``kind`` is "python" or "bash"."""

    def __init__(self, name, role, kind, where):
        self.name, self.role, self.kind, self.where = name, role, kind, where

    def describe(self):
        return "%s %s module %s: %s" % (self.kind.capitalize(), self.role, self.name, self.where)

    def python(self):
        return importlib.import_module(self.where)


def _python_path(table, name):
    return table.get(name)


def resolve(settings, name, role):
    """Resolve ``name`` for ``role`` ("backup" or "upload"); None if nothing defines it."""
    table = BACKUP if role == "backup" else UPLOAD
    dotted = table.get(name)
    if dotted and name not in settings["SHELL_MODULES"]:
        import os
        path = os.path.join(os.path.dirname(__file__), dotted.rsplit(".", 1)[1] + ".py")
        if os.path.exists(path):
            return Resolved(name, role, "python", dotted)
    from pypackrat import shim
    found = shim.find(settings, name, role)
    if found:
        return Resolved(name, role, "bash", found)
    return None


def _enabled(settings):
    """(role, key, name, resolved) of each enabled module whose list validated."""
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        if not settings.valid(key, "SHELL_MODULES", "MODULE_PATH") or key not in settings.values:
            continue
        for name in settings[key]:
            yield role, key, name, resolve(settings, name, role)


def _each_module(settings, function_name):
    """The lines of ``function_name(settings)`` of each enabled Python module.
    A module whose check reads a setting that failed validation stops there:
    that setting's own error is already reported."""
    from pypackrat.config import InvalidSetting
    lines, seen = [], set()
    for role, key, name, resolved in _enabled(settings):
        if resolved is None or resolved.kind != "python" or (role, name) in seen:
            continue
        seen.add((role, name))
        function = getattr(resolved.python(), function_name, None)
        if function is None:
            continue
        try:
            lines += function(settings)
        except InvalidSetting:
            pass
    return lines


def check(settings):
    """Problems of the enabled modules' values: unknown names, and each
    module's own checks. Every module is checked, whatever else failed."""
    problems = []
    for role, key, name, resolved in _enabled(settings):
        if resolved is None and name in settings["SHELL_MODULES"]:
            problems.append("%s: SHELL_MODULES lists %r, but no *.sh file of MODULE_PATH=%s "
                            "defines mod_%s" % (settings.where("SHELL_MODULES", role),
                                                name, settings["MODULE_PATH"], name))
        elif resolved is None:
            problems.append("%s: %s: no %s module named %r (no Python module, and no "
                            "mod_%s in a *.sh file of MODULE_PATH=%s)"
                            % (settings.where(key, role), key, role, name,
                               name, settings["MODULE_PATH"]))
    return problems + _each_module(settings, "check")


def requirements(settings):
    """What the enabled modules need from this machine (programs, directories)
    and lack: one line each. Not a configuration error: that module fails at
    run time, the others run; `packrat check` prints these as warnings."""
    return _each_module(settings, "requirements")
