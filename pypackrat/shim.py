"""Bash modules, run the way the original ran them (see shim.sh)."""
import glob
import os
import re


def module_files(settings):
    """Every *.sh of MODULE_PATH (a colon-separated list), in order."""
    files = []
    for directory in str(settings["MODULE_PATH"]).split(":"):
        if directory:
            files += sorted(glob.glob(os.path.join(directory, "*.sh")))
    return files


def _defines(path, function):
    pattern = re.compile(r"^\s*(function\s+)?%s\s*(\(\s*\))?\s*\{?\s*$|^\s*(function\s+)?%s\s*\(\s*\)"
                         % (re.escape(function), re.escape(function)), re.M)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return bool(pattern.search(fh.read()))
    except OSError:
        return False


def find(settings, name, role):
    """The Bash file that defines mod_NAME (and, for an upload module,
    list_NAME and purge_NAME somewhere in the module path), or None."""
    files = module_files(settings)
    for path in files:
        if _defines(path, "mod_" + name):
            return path
    return None
