"""Which master an incremental needs, and what restores a day: the one
place of the chain rule, for the backup, the purge, list, restore and
verify.

An incremental of a prefix dated D is a differential against the newest
master of the same prefix dated on or before D (a master of the same day
counts). Restoring a prefix as of a day takes that day's master and the
newest incremental dated from the master's day up to the day, nothing
between; with no master, the newest full archive (FS_INCREMENTAL=no)
stands alone.

The functions take any archives that have ``prefix``, ``day`` and
``master`` (names.DarName, catalog.Archive).
"""
import bisect


class Masters:
    """The masters among ``archives``, by prefix, so that each question
    "which master does an archive of PREFIX dated DAY need" costs a
    bisection (the purge asks it for every name of a large listing)."""

    def __init__(self, archives):
        by = {}
        for a in archives:
            if a.master:
                by.setdefault(a.prefix, {})[a.day] = a
        self._by = {p: (sorted(found), found) for p, found in by.items()}

    def of(self, prefix, day):
        """The master (one of its archives) an archive of ``prefix`` dated
        ``day`` needs: the newest dated on or before ``day``; None if none."""
        days, found = self._by.get(prefix, ((), None))
        i = bisect.bisect_right(days, day)
        return found[days[i - 1]] if i else None


def master_of(archive, archives):
    """The master ``archive`` (an incremental) needs, of ``archives``."""
    return Masters(archives).of(archive.prefix, archive.day)


def pick(archives, prefix, day):
    """The archives that restore ``prefix`` as of ``day``, in order:
    [master], [master, newest incremental dated from the master's day up to
    ``day``], or [full archive] where there is no master; [] when nothing
    covers that day."""
    master = Masters(archives).of(prefix, day)
    best = None
    for a in archives:
        if (not a.master and a.prefix == prefix and a.day <= day
                and (master is None or a.day >= master.day) and (best is None or a.day > best.day)):
            best = a
    return [a for a in (master, best) if a is not None]


def restore_chain(names, prefix, day):
    """``pick`` over file names (a listing): the base names of the archives
    that restore ``prefix`` as of ``day``; an archive counts when its first
    slice is there."""
    from pypackrat.core import names as archive_names
    return [a.archive for a in pick(archive_names.first_slices(names), prefix, day)]


def chains(archives, prefix):
    """The chains of one prefix, oldest first: a list of (master or None,
    [its incrementals, oldest first]); incrementals that have no master
    come first, with None."""
    mine = sorted((a for a in archives if a.prefix == prefix), key=lambda a: (a.day, not a.master))
    masters = Masters(mine)
    out = {}  # the master's day (None: no master) -> (master, [incrementals])
    for a in mine:
        if a.master:
            out[a.day] = (a, [])
        else:
            master = masters.of(prefix, a.day)
            out.setdefault(master.day if master else None, (master, []))[1].append(a)
    return list(out.values())


def orphans(archives):
    """The incrementals with no master of their prefix on or before them,
    by prefix and day."""
    archives = list(archives)
    masters = Masters(archives)
    return sorted((a for a in archives if not a.master and masters.of(a.prefix, a.day) is None),
                  key=lambda a: (a.prefix, a.day))
