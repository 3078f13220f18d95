"""``packrat list``: what there is to restore from, and what is wrong.

Per filesystem target, its chains (a master and the incrementals taken
against it) and per database its dumps, with dates and sizes in BACKUP_DIR
and on each upload module's remote; then the problems: an incremental
whose master is gone, a slice missing, a copy only remote or only local, a
size that differs between local and remote.
"""
import argparse
import textwrap

from pypackrat import catalog, log, retention
from pypackrat.core import chains, names

EXAMPLES = """\
examples:
  packrat list                 BACKUP_DIR and every module of UPLOAD_MODULES
  packrat list --local         BACKUP_DIR only (no connection)
  packrat -u ssh list          BACKUP_DIR and the ssh remote only (-u before the action)
  packrat list --host oldbox   the archives another host left on the remotes
"""


def parser():
    return argparse.ArgumentParser(
        prog="packrat list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "List the filesystem chains and database dumps of this host in BACKUP_DIR "
                    "and on each upload module's remote, with dates and sizes, and the problems "
                    "found: incrementals whose master is gone, missing slices, copies only "
                    "remote or only local, sizes that differ. Exit 0; 1 when a remote cannot "
                    "be read.", 78),
        epilog=EXAMPLES)


def main(ctx, args):
    p = parser()
    p.add_argument("--local", action="store_true", help="BACKUP_DIR only, no remote")
    p.add_argument("--host", metavar="NAME", help="archives named after this host (default: HOSTNAME)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead (fields: README, "
                        "\"Machine-readable output\")")
    a = p.parse_args(args)
    remotes = [] if a.local else list(ctx.settings["UPLOAD_MODULES"])
    if a.json:
        from pypackrat import report_schema
        with report_schema.stdout_for_json() as emit:
            with catalog.gather(ctx, a.host, remotes, sizes=True) as cat:
                lines, problems = render(ctx, cat)
                status = 1 if cat.errors else 0
                emit(document(ctx, cat, remotes, problems, status))
        return status
    with catalog.gather(ctx, a.host, remotes, sizes=True) as cat:
        lines, problems = render(ctx, cat)
    for line in lines:
        print(log.mask(line))
    print()
    if problems or cat.errors:
        print("Problems (%d):" % (len(problems) + len(cat.errors)))
        for line in cat.errors + problems:
            print("  " + log.mask(line))
    else:
        print("No problems found.")
    return 1 if cat.errors else 0


def _cell(cat, names, location):
    """The size of the files ``names`` at ``location``: a sum, '-' when none
    is there, 'k/n slices' when only some are."""
    there = [n for n in names if location in cat.files.get(n, {})]
    if not there:
        return "-"
    sizes = [cat.size(n, location) for n in there]
    total = catalog.human(sum(sizes)) if None not in sizes else "?"
    if len(there) < len(names):
        return "%s (%d/%d slices)" % (total, len(there), len(names))
    return total


def _table(rows, indent="  "):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _retention(ctx, cat):
    """With the count rules on (PURGE_KEEP_DAILY, _WEEKLY, _MONTHLY): a
    function that says, for a file name, which rules keep it at each
    location (retention.plan's ``why`` for the purge of that place, as of
    the run's date), or that a purge would delete it; None with the rules
    off (the table is as it was)."""
    counts = retention.Counts.of(ctx.settings)
    if not counts:
        return None
    from pypackrat import run
    settings, whys = ctx.settings, {}
    for location in cat.locations:
        local = location == catalog.LOCAL
        mine = run.owner(ctx, remote=not local)
        why = whys[location] = {}
        retention.plan([n for n, where in cat.files.items() if location in where and mine(n)],
                       settings["PURGE_LOCAL_ARCHIVES" if local else "PURGE_REMOTE_ARCHIVES"],
                       ctx.now, settings["PURGE_KEEP_CHAINS"], whole_chain=settings["FS_INCREMENTAL"],
                       counts=counts, why=why)

    def cell(name):
        texts = {loc: ", ".join(why[name]) or "a purge deletes it"
                 for loc, why in whys.items() if name in why}
        if len(set(texts.values())) <= 1:
            return next(iter(texts.values()), "")
        return "; ".join("%s: %s" % item for item in texts.items())
    return cell


def render(ctx, cat):
    lines, problems = [], []
    locations = list(cat.locations)
    remotes = [loc for loc in locations if loc != catalog.LOCAL]
    lines.append("Archives of %s: %s = %s%s" % (
        cat.host, catalog.LOCAL, ctx.backup_dir,
        "".join("; %s = %s" % (name, remote.describe()) for name, remote in cat.remotes.items())))
    archives = cat.archives()
    why = _retention(ctx, cat)
    extra = ["retention"] if why else []
    targets = {names.target_prefix(cat.host, t): t for t in ctx.settings["FS_TARGETS"]}
    prefixes = sorted(set(cat.prefixes()) | set(targets), key=lambda p: (p not in targets, p))
    incremental = ctx.settings["FS_INCREMENTAL"]
    for prefix in prefixes:
        lines.append("")
        label = targets.get(prefix, "(not in FS_TARGETS)")
        lines.append("Filesystem %s: %s-*.dar" % (label, prefix))
        groups = chains.chains(archives.values(), prefix)
        if not groups:
            lines.append("  no archive")
            continue
        rows = [["date", "kind", "slices"] + locations + extra]
        for master, incs in groups:
            for archive in ([master] if master else []) + incs:
                kind = archive.kind if (incremental or archive.master) else "full"
                if master is None and incremental and not archive.master:
                    kind = "incremental, NO MASTER"
                indent = "" if archive.master or master is None else "  "
                rows.append([indent + names.day_text(archive.day), kind, str(len(archive.slices))]
                            + [_cell(cat, archive.names(), loc) for loc in locations]
                            + ([why(archive.names()[0])] if why else []))
        lines += _table(rows)
    for archive in (chains.orphans(archives.values()) if incremental else []):
        problems.append("%s: an incremental whose master is gone (no %s-DATE.master.N.dar dated on "
                        "or before %s anywhere): it cannot be restored"
                        % (archive.names()[0], archive.prefix, names.day_text(archive.day)))
    for archive in sorted(archives.values(), key=lambda a: a.base):
        missing = archive.missing_slices()
        if missing:
            problems.append("%s: slice %s missing everywhere"
                            % (archive.base, ", ".join(map(str, missing))))

    dumps = cat.dumps()
    if dumps:
        lines.append("")
        lines.append("Databases")
        groups = {}
        for dump in dumps:
            groups.setdefault((dump.engine, dump.db), []).append(dump)
        for (engine, db), group in sorted(groups.items()):
            lines.append("  %s %s" % (engine, db))
            rows = [["date", "file"] + locations + extra]
            for dump in group:
                rows.append([names.day_text(dump.day), dump.name]
                            + [_cell(cat, [dump.name], loc) for loc in locations]
                            + ([why(dump.name)] if why else []))
            lines += _table(rows, "    ")
    if not archives and not dumps:
        lines.append("")
        lines.append("No archive or dump of %s found." % cat.host)

    today = catalog.until(ctx)
    for name in cat.future(today):
        problems.append("%s: dated after today (%s): not packrat's own (planted?) or a clock gone "
                        "wrong; restore and verify pass it over unless -d names its date"
                        % (name, names.day_text(today)))

    # copies: only remote, only local, sizes that differ
    if remotes:
        for name in sorted(cat.files):
            where = cat.files[name]
            if catalog.LOCAL not in where:
                problems.append("%s: only on %s, not in BACKUP_DIR" % (name, ", ".join(
                    loc for loc in remotes if loc in where)))
                continue
            absent = [loc for loc in remotes if loc not in where and loc in cat.remotes]
            if absent:
                problems.append("%s: only in BACKUP_DIR, not on %s" % (name, ", ".join(absent)))
            for loc in remotes:
                if loc in where and where[loc] is not None and where[loc] != where[catalog.LOCAL]:
                    problems.append("%s: %d bytes in BACKUP_DIR, %d on %s"
                                    % (name, where[catalog.LOCAL], where[loc], loc))
    return lines, problems



def document(ctx, cat, remotes, problems, status):
    """``packrat list --json``: the fields of report_schema.LIST."""
    errors = {}
    for name in remotes:  # catalog.gather's messages start with the module's name
        found = [e for e in cat.errors if e.startswith(name + ": ")]
        if found:
            errors[name] = found[0][len(name) + 2:]
    locations = [{"name": catalog.LOCAL, "kind": "local", "description": ctx.backup_dir,
                  "error": None if cat.directory and _isdir(cat.directory) else "not a directory"}]
    for name in remotes:
        remote = cat.remotes.get(name)
        locations.append({"name": name, "kind": "remote",
                          "description": remote.describe() if remote is not None else name,
                          "error": errors.get(name)})
    order = [loc["name"] for loc in locations]
    archives = cat.archives()
    targets = {names.target_prefix(cat.host, t): t for t in ctx.settings["FS_TARGETS"]}
    incremental = ctx.settings["FS_INCREMENTAL"]
    out = []
    for prefix in sorted({a.prefix for a in archives.values()}):
        for master, incs in chains.chains(archives.values(), prefix):
            for archive in ([master] if master else []) + incs:
                if archive.master:
                    kind = "master" if incremental else "full"
                elif not incremental:
                    kind = "full"
                else:
                    kind = "incremental" if master else "orphan"
                files = archive.names()
                where = []
                for location in order:
                    there = [n for n in files if location in cat.files.get(n, {})]
                    if there:
                        sizes = [cat.size(n, location) for n in there]
                        where.append({"name": location, "slices": len(there),
                                      "size": None if None in sizes else sum(sizes)})
                top = max(archive.slices)
                size = next((w["size"] for w in where if w["slices"] == len(files)
                             and w["size"] is not None and not archive.missing_slices()), None)
                out.append({"name": archive.base, "target": targets.get(prefix), "prefix": prefix,
                            "day": names.day_text(archive.day), "kind": kind,
                            "master": master.base if master and not archive.master
                            and kind == "incremental" else None,
                            "slices": top, "missing_slices": archive.missing_slices(),
                            "size": size, "locations": where})
    dumps = []
    for dump in cat.dumps():
        where = [{"name": location, "size": cat.size(dump.name, location)}
                 for location in order if location in cat.files.get(dump.name, {})]
        dumps.append({"name": dump.name, "engine": dump.engine, "database": names.database_of(dump.db),
                      "day": names.day_text(dump.day),
                      "size": next((w["size"] for w in where if w["size"] is not None), None),
                      "locations": where})
    return {"version": 1, "action": "list", "exit_status": status, "host": cat.host,
            "backup_dir": ctx.backup_dir, "locations": locations, "archives": out, "dumps": dumps,
            "problems": list(cat.errors) + list(problems)}


def _isdir(path):
    import os
    return os.path.isdir(path)
