"""``packrat check``: validate the configuration and print the effective
settings, where each came from, secrets masked."""
import argparse

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
    options = parser.parse_args(args)
    settings = ctx.settings
    print(log.mask("# configuration %s: valid" % settings.path))
    for line in config.requirements(settings):
        log.warn("Warning: " + line)
    _warn_backup_dir(settings["BACKUP_DIR"])
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in settings[key]:
            print(log.mask("# %s" % plugins.resolve(settings, name, role).describe()))
    for line in config.effective(settings, options.meanings):
        print(log.mask(line))  # a secret's value copied into another setting stays hidden
    return 0


def _warn_backup_dir(directory):
    """A warning (not an error) when BACKUP_DIR lets group or others in:
    archives are 0600, but their names, sizes and dates show, and a file
    someone else's tool writes there may not be private."""
    import os
    import stat
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warn("packrat check: warning: BACKUP_DIR %s is accessible to %s (mode %04o); "
                 "packrat writes its files 0600, but make the directory private: chmod 700 %s"
                 % (directory, "group and others" if mode & 0o070 and mode & 0o007
                    else "its group" if mode & 0o070 else "others", mode, directory))
