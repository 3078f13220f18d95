"""The name-to-module table, and which implementation a name runs.

A backup module (one file here) provides::

    check(settings) -> [problem, ...]   # when the module is enabled
    backup(ctx) -> [path, ...]          # the archives it made, final names

An upload module provides ``check(settings)`` and ``Remote``, a subclass of
``pypackrat.transfer.Remote`` (put, list, delete, ...).

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


def check(settings):
    """Problems of the enabled modules: unknown names, and each module's own."""
    problems = []
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in settings[key]:
            resolved = resolve(settings, name, role)
            if resolved is None and name in settings["SHELL_MODULES"]:
                problems.append("%s: SHELL_MODULES lists %r, but no *.sh file of MODULE_PATH=%s "
                                "defines mod_%s" % (settings.origin.get("SHELL_MODULES", settings.path),
                                                    name, settings["MODULE_PATH"], name))
            elif resolved is None:
                problems.append("%s: %s: no %s module named %r (no Python module, and no "
                                "mod_%s in a *.sh file of MODULE_PATH=%s)"
                                % (settings.origin.get(key, settings.path), key, role, name,
                                   name, settings["MODULE_PATH"]))
            elif resolved.kind == "python":
                problems += resolved.python().check(settings)
    return problems
