"""Which module a name runs, found by folder.

Every ``*.py`` of ``pypackrat/backup/`` is a backup module and every
``*.py`` of ``pypackrat/upload/`` an upload module, named by its file (no
table to keep). A name listed in SHELL_MODULES, or with no Python file,
runs the Bash module of MODULE_PATH that defines ``mod_NAME`` (shim.py).

Either way ``resolve()`` returns an object with one interface, so that
nothing outside this file and the shim asks which kind it is::

    module.name, module.role, module.describe()
    module.check(settings) -> [problem]      # configuration errors
    module.requirements(settings) -> [line]  # what this machine lacks
    module.backup(ctx) -> [path]             # backup modules
    module.remote(ctx) -> transfer.Lister    # upload modules, not yet open
    module.upload(ctx, files)                # upload modules

A Python module file declares its settings (``SETTINGS``, see
pypackrat/settings.py). A backup module file provides, optionally,
``check(settings)`` and ``requirements(settings)``, and ``backup(ctx)``; an
upload module file provides, optionally, ``check`` and ``requirements``, and
``Remote``, a subclass
of ``pypackrat.transfer.Transport``. ``check`` and ``requirements`` get
a ``settings.View``, whose ``where(NAME)`` names the file to edit (for a
value left at its default: the file that enabled the module).
"""
import functools
import importlib
import pkgutil

ROLES = ("backup", "upload")
KEYS = {"backup": "BACKUP_MODULES", "upload": "UPLOAD_MODULES"}


@functools.lru_cache(maxsize=None)
def available(role):
    """{name: dotted module path} of the Python modules of ``role``, by folder."""
    package = importlib.import_module("pypackrat." + role)
    return {info.name: "pypackrat.%s.%s" % (role, info.name)
            for info in pkgutil.iter_modules(package.__path__)
            if not info.name.startswith("_") and not info.ispkg}


class PythonModule:
    """A module of pypackrat/backup/ or pypackrat/upload/."""

    kind = "Python"

    def __init__(self, name, role, dotted):
        self.name, self.role, self.where = name, role, dotted

    def describe(self):
        return "%s %s module %s: %s" % (self.kind, self.role, self.name, self.where)

    def _code(self):
        return importlib.import_module(self.where)

    def _view(self, settings):
        """``settings`` as this module reads them (pypackrat.settings.View)."""
        from pypackrat.settings import View
        return View(settings, self.role, self.name)

    def check(self, settings):
        from pypackrat import settings as declared
        return declared.check(self._code(), self._view(settings))

    def requirements(self, settings):
        function = getattr(self._code(), "requirements", None)
        return list(function(self._view(settings))) if function else []

    def backup(self, ctx):
        return [str(p) for p in self._code().backup(ctx)]

    def remote(self, ctx):
        return self._code().Remote(ctx)

    def owns_names(self):
        """Python modules' names are the domain's (dar prefixes, dumps)."""
        return False

    def upload(self, ctx, files):
        from pypackrat import run, transfer
        with run.connected(ctx, self) as remote:
            for path in files:
                transfer.upload(remote, path)


def resolve(settings, name, role):
    """The module ``name`` of ``role`` ("backup" or "upload"); None if
    nothing defines it."""
    dotted = available(role).get(name)
    if dotted and name not in settings["SHELL_MODULES"]:
        return PythonModule(name, role, dotted)
    from pypackrat import shim
    return shim.find_module(settings, name, role)


def require(settings, name, role):
    """As resolve(), with a PackratError when nothing defines ``name``."""
    module = resolve(settings, name, role)
    if module is None:
        from pypackrat.errors import PackratError
        raise PackratError("no %s module named %r" % (role, name))
    return module


def enabled(settings):
    """(role, key, name, module or None) of each enabled module whose list validated."""
    for role in ROLES:
        key = KEYS[role]
        if not settings.valid(key, "SHELL_MODULES", "MODULE_PATH") or key not in settings.values:
            continue
        for name in settings[key]:
            yield role, key, name, resolve(settings, name, role)


def _each_module(settings, function_name):
    """The lines of ``module.function_name(settings)`` of each enabled
    module, each once. A module whose check reads a setting that failed
    validation stops there: that setting's own error is already reported."""
    from pypackrat.config import InvalidSetting
    lines, seen = [], set()
    for role, key, name, module in _enabled_modules(settings):
        if (role, name) in seen:
            continue
        seen.add((role, name))
        try:
            lines += getattr(module, function_name)(settings)
        except InvalidSetting:
            pass
    return lines


def _enabled_modules(settings):
    return ((r, k, n, m) for r, k, n, m in enabled(settings) if m is not None)


def check(settings):
    """Problems of the enabled modules' values: unknown names, and each
    module's own checks. Every module is checked, whatever else failed."""
    problems = []
    for role, key, name, module in enabled(settings):
        if module is None and name in settings["SHELL_MODULES"]:
            problems.append("%s: SHELL_MODULES lists %r, but no *.sh file of MODULE_PATH=%s "
                            "defines mod_%s" % (settings.where("SHELL_MODULES", role),
                                                name, settings["MODULE_PATH"], name))
        elif module is None:
            problems.append("%s: %s: no %s module named %r (no Python module, and no "
                            "mod_%s in a *.sh file of MODULE_PATH=%s)"
                            % (settings.where(key, role), key, role, name,
                               name, settings["MODULE_PATH"]))
    return problems + _each_module(settings, "check")


def requirements(settings):
    """What the enabled modules need from this machine (programs, directories)
    and lack: one line each. Not a configuration error: that module fails at
    run time, the others run; `packrat check` prints these as warnings."""
    lines = _each_module(settings, "requirements")
    if any(module.kind == "Bash" for _, _, _, module in _enabled_modules(settings)):
        from pypackrat import shim
        lines += shim.syntax_errors(settings)  # the files every Bash module sources: read once
    return lines
