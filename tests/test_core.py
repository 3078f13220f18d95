"""The domain core (pypackrat/core/): archive and dump names and their
parsing, chains (which master an incremental needs, what restores a day),
temporary names and their sweeping, and handing dar the key. No server:
this file is part of the fast tier."""
import datetime
import os
import subprocess

import pytest

from pypackrat import catalog, execute, retention
from pypackrat.backup import filesystem
from pypackrat.core import chains, darkey, names, temp
from pypackrat.errors import PackratError

pytestmark = pytest.mark.fast

D = datetime.date


def day(text):
    return datetime.datetime.strptime(text, "%Y%m%d").date()


# -- archive names ----------------------------------------------------------------

def test_archive_names_round_trip():
    prefix = names.archive_prefix("web", "/home/sites")
    assert prefix == "web-home-sites"
    assert names.target_prefix("web", "/home/sites") == prefix
    assert names.target_prefix("web", "oldbox-etc") == "oldbox-etc"  # a prefix as it is
    for master in (False, True):
        base = names.archive_base(prefix, "20240107", master)
        assert base == "web-home-sites-20240107" + (".master" if master else "")
        for number in (1, 2, 12):
            name = names.slice_name(base, number)
            p = names.parse_dar(name)
            assert (p.name, p.prefix, p.day, p.master, p.slice, p.archive) == \
                (name, prefix, D(2024, 1, 7), master, number, base)
            assert names.slice_of(name, base) == number


@pytest.mark.parametrize("name", [
    "web-etc-20240230.1.dar",          # no such day
    "web-etc-20240107.dar",            # no slice number
    "web-etc-20240107.1.dar\n",        # a line break after it
    "web-etc-20240107.\u0661.dar",     # a digit that is not ASCII
    "web-etc-\u0662\u0660240107.1.dar",
    "-20240107.1.dar",                 # no prefix
    "web-etc-20240107.master.1.dar.partial",
    "web-etc-1990107.1.dar",
    "web-mysql-db-20240107.sql.bz2",
])
def test_hostile_or_foreign_names_are_no_dar_slice(name):
    assert names.parse_dar(name) is None


def test_slice_of_takes_only_the_slices_of_its_archive():
    base = "web-etc-20240107"
    assert names.slice_of(base + ".3.dar", base) == 3
    assert names.slice_of(base + ".master.1.dar", base) is None
    assert names.slice_of(base + "2.1.dar", base) is None
    assert names.slice_of(base + ".x.dar", base) is None
    assert names.slice_of(base + ".1.dar\n", base) is None
    assert names.slice_of(temp.temporary_name(base) + ".1.dar", base) is None


def test_dates_of_the_command_line():
    assert names.parse_date("20240229") == D(2024, 2, 29)
    assert names.day_text(D(2024, 2, 29)) == "20240229"
    for bad in ("20230229", "2024-02-29", "", "2024022", "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661",
                "20240101\n", None):
        with pytest.raises(PackratError, match="YYYYMMDD"):
            names.parse_date(bad)


# -- dump names --------------------------------------------------------------------

HOSTILE_DATABASES = ["shop", "shop/eu", "shop-eu", "shop%2Feu", "a%zz", "-f", "--init-command=x",
                     "all.x", "x-20240101", "tab\there", "line\nbreak", "caf\u00e9", "bad\udcffbyte",
                     "..", "a b", "%", "%41"]


@pytest.mark.parametrize("suffix", [names.BZ2, names.ZST])
def test_dump_names_round_trip_for_hostile_databases(suffix):
    parts = set()
    for database in HOSTILE_DATABASES:
        name = names.dump_name("my-host", "postgresql", database, "20240107", suffix)
        assert "/" not in name and "\n" not in name
        host, engine, part, date, got_suffix = names.parse_dump_name(name)
        assert (host, engine, date, got_suffix) == ("my-host", "postgresql", "20240107", suffix)
        assert names.database_of(part) == database
        parts.add(part)
    assert len(parts) == len(HOSTILE_DATABASES)  # two databases never share a file


def test_whole_server_names_are_reserved():
    assert names.file_part(names.ALL) == names.ALL_NAME
    assert names.dump_name("h", "mysql", names.ALL, "20240107") == "h-mysql-all-20240107.sql.bz2"
    assert names.reserved(names.ALL) is None
    assert names.reserved("shop") is None
    assert "whole-server dump" in names.reserved("all")
    assert "DB_SPLIT_ALL" in names.reserved("all.globals")
    assert names.is_whole_server("all.globals") and names.is_whole_server(names.ALL)
    assert not names.is_whole_server("all.x")


@pytest.mark.parametrize("name", [
    "h-mysql-db-20240107.sql.gz",
    "h-mysql-db-20240107.sql.bz2\n",
    "h-sqlite-db-20240107.sql.bz2",
    "h-mysql--20240107.sql.bz2",
    "h-etc-20240107.1.dar",
])
def test_foreign_names_are_no_dump(name):
    assert names.parse_dump_name(name) is None
    assert catalog.parse_dump(name) is None


def test_a_dump_with_an_impossible_date_is_no_dump_in_the_catalog():
    assert names.parse_dump_name("h-mysql-db-20240230.sql.bz2") is not None
    assert catalog.parse_dump("h-mysql-db-20240230.sql.bz2") is None
    dump = catalog.parse_dump("h-mysql-shop%2Feu-20240229.sql.zst")
    assert (dump.host, dump.engine, dump.db, dump.day, dump.suffix) == \
        ("h", "mysql", "shop%2Feu", D(2024, 2, 29), ".sql.zst")


# -- chains ------------------------------------------------------------------------

def slices(prefix, spec):
    """File names from ``DATE`` (incremental) and ``DATE.master`` words."""
    return [names.slice_name("%s-%s" % (prefix, word), 1) for word in spec.split()]


def parsed(file_names):
    return [names.parse_dar(n) for n in file_names]


WEEK = slices("h-etc", "20240107.master 20240108 20240109 20240110 20240111 20240112 20240113 "
                       "20240114.master 20240115")


def test_weekly_incrementals_need_the_master_before_them():
    archives = parsed(WEEK)
    for a in archives:
        master = chains.master_of(a, archives)
        want = "20240114" if a.day >= D(2024, 1, 14) else "20240107"
        assert master.archive == "h-etc-%s.master" % want, a.name
    for d in ("20240107", "20240113", "20240114", "20240115"):
        chain = chains.restore_chain(WEEK, "h-etc", day(d))
        master = "20240114" if d >= "20240114" else "20240107"
        expect = ["h-etc-%s.master" % master] + ([] if d in ("20240107", "20240114") else ["h-etc-%s" % d])
        assert chain == expect, d


def test_monthly_masters():
    names_ = slices("h-www", "20240101.master 20240102 20240131 20240201.master 20240202 20240229")
    archives = parsed(names_)
    assert chains.master_of(names.parse_dar(names_[2]), archives).day == D(2024, 1, 1)
    assert chains.master_of(names.parse_dar(names_[-1]), archives).day == D(2024, 2, 1)
    assert chains.restore_chain(names_, "h-www", D(2024, 1, 31)) == ["h-www-20240101.master", "h-www-20240131"]
    # between the newest incremental and the day asked: the newest up to that day
    assert chains.restore_chain(names_, "h-www", D(2024, 2, 15)) == ["h-www-20240201.master", "h-www-20240202"]
    assert chains.restore_chain(names_, "h-www", D(2023, 12, 31)) == []


def test_a_master_of_the_same_day_counts_and_another_prefix_does_not():
    archives = parsed(slices("h-a", "20240110.master 20240110") + slices("h-b", "20240101.master")
                      + slices("h-a", "20240109"))
    same_day, orphan = archives[1], archives[3]
    assert chains.master_of(same_day, archives).archive == "h-a-20240110.master"
    assert chains.master_of(orphan, archives) is None
    assert [a.name for a in chains.orphans(archives)] == [orphan.name]


def test_a_master_without_its_first_slice_is_not_there():
    listing = slices("h-a", "20240101.master 20240105") + ["h-a-20240104.master.2.dar"]
    assert chains.restore_chain(listing, "h-a", D(2024, 1, 5)) == ["h-a-20240101.master", "h-a-20240105"]
    assert filesystem.reference_master(listing, "h-a", D(2024, 1, 6)) == "h-a-20240101.master"


def test_full_archives_stand_alone_without_a_master():
    listing = slices("h-a", "20240101 20240102 20240103")  # FS_INCREMENTAL=no
    assert chains.restore_chain(listing, "h-a", D(2024, 1, 2)) == ["h-a-20240102"]
    assert chains.restore_chain(listing, "h-a", D(2024, 1, 9)) == ["h-a-20240103"]
    assert [a.day for a in chains.orphans(parsed(listing))] == [D(2024, 1, d) for d in (1, 2, 3)]


def test_chains_group_each_master_with_its_incrementals_orphans_first():
    listing = slices("h-a", "20240103 20240105.master 20240105 20240106 20240110.master 20240111")
    listing += slices("h-b", "20240105.master")
    groups = chains.chains(parsed(listing), "h-a")
    shape = [(m.day.day if m else None, [a.day.day for a in incs]) for m, incs in groups]
    assert shape == [(None, [3]), (5, [5, 6]), (10, [11])]
    assert chains.chains(parsed(listing), "h-c") == []


def test_catalog_archives_follow_the_same_rule():
    cat = catalog.Catalog("h")
    for name in WEEK + ["h-etc-20240110.2.dar"]:
        cat.add(catalog.LOCAL, name, 1)
    archives = cat.archives()
    picked = chains.pick(archives.values(), "h-etc", D(2024, 1, 10))
    assert [a.base for a in picked] == ["h-etc-20240107.master", "h-etc-20240110"]
    assert picked[1].names() == ["h-etc-20240110.1.dar", "h-etc-20240110.2.dar"]
    assert [m.base for m, _ in chains.chains(archives.values(), "h-etc")] == \
        ["h-etc-20240107.master", "h-etc-20240114.master"]


def test_many_masters_are_found_by_bisection():
    masters = [names.parse_dar(names.slice_name(names.archive_base("p", (D(2020, 1, 1) + datetime.timedelta(
        days=7 * i)).strftime("%Y%m%d"), True), 1)) for i in range(300)]
    index = chains.Masters(masters)
    assert index.of("p", D(2019, 12, 31)) is None
    assert index.of("p", D(2020, 1, 1)).day == D(2020, 1, 1)
    assert index.of("p", D(2020, 1, 13)).day == D(2020, 1, 8)
    assert index.of("p", D(2099, 1, 1)).day == masters[-1].day
    assert index.of("q", D(2099, 1, 1)) is None


def test_the_purge_keeps_the_master_a_kept_incremental_needs():
    now = datetime.datetime(2024, 1, 20, 3, 0)
    listing = slices("h-a", "20240101.master 20240102 20240108.master 20240115")
    deleted = retention.plan(listing, 10, now)
    assert deleted == ["h-a-20240101.master.1.dar", "h-a-20240102.1.dar"]
    assert retention.plan(listing, 10, now, keep_chains=False, keep_newest=False) == sorted(listing[:3])


# -- temporary names ---------------------------------------------------------------

def test_temporary_and_partial_names():
    name = temp.temporary_name("h-etc-20240107.1.dar")
    assert name == ".packrat-tmp-%d-h-etc-20240107.1.dar" % os.getpid()
    assert temp.is_temporary(name) and temp.is_temporary("/backup/" + name)
    assert not temp.is_temporary("h-etc-20240107.1.dar")
    partial = temp.partial_name("h-etc-20240107.1.dar")
    assert partial == "h-etc-20240107.1.dar.partial"
    assert temp.partial_of(partial) == "h-etc-20240107.1.dar"
    assert temp.partial_of("h-etc-20240107.1.dar") is None
    assert temp.partial_of(".partial") is None
    assert temp.is_transient(partial) and temp.is_transient(name)
    # neither is a backup, for the catalog or the purge
    cat = catalog.Catalog("h")
    assert cat.mine("h-etc-20240107.1.dar")
    assert not cat.mine(partial) and not cat.mine(name)
    assert names.parse_dar(partial) is None
    assert not retention.Owner("h", ["h-etc"])(name)


def dead_pid():
    pid = 4_000_000
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    return pid


def test_sweep_removes_only_what_dead_runs_left(tmp_path):
    dead = dead_pid()
    stale = tmp_path / (".packrat-tmp-%d-h-etc-20240107.1.dar" % dead)
    stale_dir = tmp_path / "sub" / (".packrat-tmp-%d-restore-x" % dead)
    stale_dir.mkdir(parents=True)
    (stale_dir / "inside").write_text("x")
    stale.write_text("x")
    mine = tmp_path / temp.temporary_name("h-etc-20240108.1.dar")  # this live process's
    mine.write_text("x")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / (".packrat-tmp-%d-link" % dead)
    link.symlink_to(victim)
    other = tmp_path / ("packrat-tmp-%d-x" % dead)  # not the pattern: no leading dot
    other.write_text("x")
    # private directories: a dead run's goes, this run's own stays
    own_private = execute.private_dir()
    dead_private = os.path.join(temp.private_bases()[0], "packrat-%d-core%d" % (dead, os.getpid()))
    os.mkdir(dead_private, 0o700)
    temp.sweep_stale(tmp_path)
    assert not stale.exists() and not stale_dir.exists()
    assert mine.exists() and other.exists() and victim.read_text() == "keep"
    assert os.path.islink(link)  # a link is never followed nor removed
    assert os.path.isdir(own_private) and not os.path.exists(dead_private)


# -- the dar key -------------------------------------------------------------------

def test_dcf_word_quotes_what_dar_would_split():
    assert darkey.dcf_word("plain") == '"plain"'
    assert darkey.dcf_word('a b"c\'d`e\\f\tg\nh\r') == '"a b\\"c\\\'d\\`e\\\\f\\\tg\\\nh\\\r"'


def test_key_lines_to_make_and_to_read():
    assert darkey.key_lines("k y") == '-K ":k y"\n'
    assert darkey.key_lines("k", "aes256", reference=True) == '-K "aes256:k"\n-J ":k"\n'


def read_fd(key):
    """What a child process reads at the path the key's argv names."""
    assert key.args[0] == "-B"
    return subprocess.run(["cat", key.args[1]], pass_fds=key.pass_fds, capture_output=True,
                          check=True).stdout


def test_no_key_no_argument():
    with darkey.handed("") as key:
        assert not key and key.args == [] and key.pass_fds == ()


def test_the_key_goes_through_a_descriptor_not_argv():
    secret = "s3cr3t \u00e9 \udcff-K"
    with darkey.handed(secret) as key:
        assert key and key.args == ["-B", "/dev/fd/%d" % key.fd] and key.pass_fds == (key.fd,)
        assert read_fd(key) == darkey.key_lines(secret).encode("utf-8", "surrogateescape")
        fd = key.fd
    with pytest.raises(OSError):
        os.fstat(fd)  # closed after the block
    settings = {"ENCRYPTION_KEY": secret, "FS_CIPHER": "blowfish", "FS_SLICE_SIZE": "",
                "FS_EXCLUDE_FILES": [], "FS_EXCLUDE_PATHS": []}
    with filesystem.key_file(settings, "/backup/ref") as key:
        argv = filesystem.dar_argv(settings, "/backup/new", "/etc", "/backup/ref", key.args)
        assert not any(secret in word or "s3cr3t" in word for word in argv)
        assert argv[-3:] == ["-B", "/dev/fd/%d" % key.fd, "-Q"]
        assert read_fd(key) == ('-K "blowfish:%s"\n-J ":%s"\n' % (secret, secret)).encode(
            "utf-8", "surrogateescape")
