"""``packrat check``: validate the configuration and print the effective
settings, where each came from, secrets masked."""
import argparse

from pypackrat import config, modules


def main(ctx, args):
    parser = argparse.ArgumentParser(
        prog="packrat check",
        description="Validate the configuration (packrat.conf and modules.d) and print "
                    "every effective setting with where it came from; secrets are masked. "
                    "Exit 0 when valid, 1 with one line per problem otherwise.")
    parser.parse_args(args)
    settings = ctx.settings
    print("# configuration %s: valid" % settings.path)
    for role, key in (("backup", "BACKUP_MODULES"), ("upload", "UPLOAD_MODULES")):
        for name in settings[key]:
            print("# %s" % modules.resolve(settings, name, role).describe())
    for line in config.effective(settings):
        print(line)
    return 0
