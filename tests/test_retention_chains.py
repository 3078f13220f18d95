"""Chain-aware retention with real dar chains: with a purge age shorter
than a week, a master stays while a kept incremental depends on it, locally
and on a remote (the local upload module), and goes with the last of its
incrementals; what is left always restores."""

from tests.test_filesystem import dar_names, mutate, prefix, restore, snapshot, write

DAYS = ["20240107", "20240108", "20240109", "20240110", "20240111", "20240112", "20240113",
        "20240114", "20240115", "20240116"]  # Sun .. Sat, Sun, Mon, Tue


def expected(p, day_index):
    """What a 2-day purge (run before each backup) leaves after day ``day_index``'s run:
    the newest chain whatever its age (its master and every incremental on
    it; the purge runs before the day's backup, so on the second master's
    day that is still the first chain), incrementals at most 2 days old, and
    each master that one of them (or the run itself) depends on, or that is
    that young itself."""
    newest = "20240114" if DAYS[day_index] > "20240114" else "20240107"
    names = []
    for i in range(day_index + 1):
        day = DAYS[i]
        young = day_index - i <= 2
        master = day in ("20240107", "20240114")
        if master:
            depends = [j for j in range(i + 1, day_index + 1) if day_index - j <= 2
                       and DAYS[j] not in ("20240107", "20240114")
                       and (day == "20240114" or DAYS[j] < "20240114")]
            if young or depends or day == newest:
                names.append("%s-%s.master.1.dar" % (p, day))
        elif young or day > newest:
            names.append("%s-%s.1.dar" % (p, day))
    return sorted(names)


def test_masters_kept_while_needed(penv):
    src = penv.tmp / "src"
    src.mkdir()
    remote = penv.tmp / "remote"
    remote.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)],
                         PURGE_LOCAL_ARCHIVES=2, PURGE_REMOTE_ARCHIVES=2,
                         UPLOAD_MODULES=["local"], LOCAL_DIR=str(remote))
    bk, p = str(penv.backup_dir), prefix(src)
    seen = {}
    for i, day in enumerate(DAYS):
        if i <= 7:
            mutate(str(src), i)
        else:
            write(str(src / ("day%d.txt" % i)), "day %d\n" % i, i)
        penv.run(date=day, check=0)
        seen[day] = (dar_names(bk), dar_names(str(remote)))
        assert dar_names(bk) == expected(p, i), day
        assert dar_names(str(remote)) == expected(p, i), day
        # what is left restores the tree as of today
        chain = ["%s-%s.master" % (p, day)] if day in ("20240107", "20240114") else \
            ["%s-%s.master" % (p, "20240107" if day < "20240114" else "20240114"), "%s-%s" % (p, day)]
        assert restore(bk, chain, str(penv.tmp / "r")) == snapshot(str(src)), day
    # the cases the rule is about, spelled out
    first = "%s-20240107.master.1.dar" % p
    # master 6 days old, kept with every incremental of its chain, the newest
    assert seen["20240113"][0] == [first] + ["%s-%s.1.dar" % (p, d) for d in DAYS[1:7]]
    assert first in seen["20240115"][0] and first in seen["20240115"][1]  # Saturday's still kept
    assert first not in seen["20240116"][0] and first not in seen["20240116"][1]  # gone with it
    assert seen["20240116"][0] == ["%s-20240114.master.1.dar" % p, "%s-20240115.1.dar" % p,
                                   "%s-20240116.1.dar" % p]


def test_without_chains_the_master_goes_by_age(penv):
    """PURGE_KEEP_CHAINS=no: a master goes by age (for contrast), except that
    the newest chain (its newest master and newest incremental) is kept
    whatever its age (issue 11: never the last good backup)."""
    src = penv.tmp / "src"
    src.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)],
                         PURGE_LOCAL_ARCHIVES=2, PURGE_KEEP_CHAINS=False)
    p = prefix(src)
    for i, day in enumerate(DAYS[:9]):
        if i <= 7:
            mutate(str(src), i)
        else:
            write(str(src / ("day%d.txt" % i)), "day %d\n" % i, i)
        penv.run(date=day, check=0)
        if day == "20240110":
            # Wednesday: Sunday's master is 3 days old, but it is the newest chain's
            assert dar_names(str(penv.backup_dir)) == [
                "%s-20240107.master.1.dar" % p, "%s-20240108.1.dar" % p,
                "%s-20240109.1.dar" % p, "%s-20240110.1.dar" % p]
    # Monday after the second master: the first goes by age, though Saturday's
    # incremental (kept, 2 days old) depends on it; with chains kept it would stay
    assert dar_names(str(penv.backup_dir)) == ["%s-20240113.1.dar" % p, "%s-20240114.master.1.dar" % p,
                                               "%s-20240115.1.dar" % p]
