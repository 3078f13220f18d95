"""The fast tier's own tests (pytest -m fast): the original's flags as
cli.parse reads them, retention plans over generated archive, dump and
module names, and the config's normalisation through config.load (bash
evaluates the file; no server, no packrat subprocess). And the guard that
keeps the tier free of servers (tests/conftest.py).

docs/ORIGINAL.md states the contract these tests hold: flags, names, the
purge's age rule and what it keeps."""
import datetime
import re
import socket
import subprocess
import types

import pytest

from pypackrat import cli, config, retention
from pypackrat.errors import ConfigError
from tests import conftest

pytestmark = pytest.mark.fast


# -- flags (cli.parse) ------------------------------------------------------

def parse(*argv):
    return cli.parse(list(argv))


def test_no_flags_is_the_nightly_run_with_the_config_defaults():
    opts = parse()
    assert opts.action is None and opts.args == []
    assert (opts.verbose, opts.dry_run, opts.purge_only) == (False, False, False)
    assert opts.config is None and opts.upload_date is None
    assert cli.overrides(opts) == {}


@pytest.mark.parametrize("argv", [["-vnP"], ["-v", "-n", "-P"], ["-Pv", "-n"], ["-nPv"]])
def test_flags_combine_in_any_order(argv):
    opts = parse(*argv)
    assert (opts.verbose, opts.dry_run, opts.purge_only) == (True, True, True)


@pytest.mark.parametrize("argv", [["-c", "/x.conf"], ["-c/x.conf"], ["-vc", "/x.conf"], ["-vc/x.conf"]])
def test_an_argument_is_attached_or_the_next_word(argv):
    assert parse(*argv).config == "/x.conf"


def test_every_option_with_an_argument():
    opts = parse("-p", "3", "-r7", "-m", "filesystem,mysql", "-u", "ssh,s3", "-U", "20261120")
    assert (opts.purge_local, opts.purge_remote) == (3, 7)
    assert opts.backup_modules == ["filesystem", "mysql"]
    assert opts.upload_modules == ["ssh", "s3"]
    assert opts.upload_date == "20261120"
    assert cli.overrides(opts) == {"PURGE_LOCAL_ARCHIVES": "3", "PURGE_REMOTE_ARCHIVES": "7",
                                   "BACKUP_MODULES": ["filesystem", "mysql"],
                                   "UPLOAD_MODULES": ["ssh", "s3"]}


def test_r_is_accepted():
    """The original documented -r but refused it as an illegal option."""
    assert parse("-r", "0").purge_remote == 0


def test_an_empty_module_list_runs_no_module():
    opts = parse("-m", "", "-u", "")
    assert opts.backup_modules == [] and opts.upload_modules == []
    assert cli.overrides(opts) == {"BACKUP_MODULES": [], "UPLOAD_MODULES": []}


def test_an_argument_may_start_with_a_dash_as_in_getopts():
    assert parse("-c", "-v").config == "-v"
    assert parse("-c", "-v").verbose is False


def test_the_action_word_ends_the_options():
    opts = parse("-n", "restore", "--date", "20261120", "-v", "/etc")
    assert opts.dry_run is True and opts.verbose is False
    assert opts.action == "restore" and opts.args == ["--date", "20261120", "-v", "/etc"]
    opts = parse("-v", "--", "check")
    assert opts.verbose is True and opts.action == "check" and opts.args == []


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["-v", "-h"], ["-vh"]])
def test_help(argv):
    assert parse(*argv).action == "help"


def test_version():
    assert parse("--version").action == "version"


@pytest.mark.parametrize("argv, said", [
    (["-x"], "illegal option -- x"),
    (["-vx"], "illegal option -- x"),
    (["-p"], "option requires an argument -- p"),
    (["-v", "-c"], "option requires an argument -- c"),
    (["-p", "abc"], "abc"),
    (["-p", "-1"], "-1"),
    (["-r", "3d"], "3d"),
    (["-U", "2026-11-20"], "YYYYMMDD"),
    (["-U", "1999"], "YYYYMMDD"),
    (["frobnicate"], "unknown action: frobnicate"),
    (["-v", "backup"], "unknown action: backup"),
])
def test_bad_command_lines_are_usage_errors(argv, said):
    with pytest.raises(cli.UsageError) as failed:
        parse(*argv)
    assert said in str(failed.value)


# -- retention plans (retention.plan, retention.Owner) ----------------------

NOW = datetime.datetime(2026, 11, 26, 3, 0)   # a Thursday; Sundays: 1, 8, 15, 22 Nov
TODAY = NOW.date()


def ymd(day):
    return day.strftime("%Y%m%d")


def nights(first, last, host="h", target="-etc", master_day="Sun", slices=2):
    """What a nightly run makes from ``first`` to ``last`` (dates): a dar
    master of ``slices`` slices on the master day, an incremental of one
    slice on the other days; a MySQL and a PostgreSQL dump; a Bash module's
    archive. The names of docs/ORIGINAL.md, written out here."""
    names = []
    day = first
    while day <= last:
        d = ymd(day)
        if day.strftime("%a") == master_day:
            names += ["%s%s-%s.master.%d.dar" % (host, target, d, n) for n in range(1, slices + 1)]
        else:
            names.append("%s%s-%s.1.dar" % (host, target, d))
        names += ["%s-mysql-shop-%s.sql.bz2" % (host, d), "%s-postgresql-all-%s.sql.zst" % (host, d),
                  "%s-example-srv-www-%s.tar.gz" % (host, d)]
        day += datetime.timedelta(days=1)
    return names


def dated(names, until):
    """The names whose date (all of these names hold one) is ``until`` or earlier."""
    return sorted(n for n in names if re.search(r"20\d{6}", n).group() <= ymd(until))


FIVE_WEEKS = nights(datetime.date(2026, 10, 23), TODAY)


def test_age_is_whole_days_since_the_dates_midnight():
    for days, now, kept, purged in [
            (10, NOW, "20261116", "20261115"),
            (10, datetime.datetime(2026, 11, 26, 23, 59), "20261116", "20261115"),
            (0, NOW, "20261126", "20261125"),
            (1, datetime.datetime(2026, 11, 26, 0, 0), "20261125", "20261124")]:
        names = ["h-notes-%s.txt" % kept, "h-notes-%s.txt" % purged]
        assert retention.plan(names, days, now, keep_newest=False) == ["h-notes-%s.txt" % purged]


def test_a_master_stays_while_a_kept_incremental_needs_it():
    """PURGE_LOCAL_ARCHIVES=10 on 26 Nov: everything dated up to 15 Nov is
    old, but the incrementals of 16-21 Nov are taken against the master of
    Sunday 15 Nov: its two slices stay."""
    deleted = retention.plan(FIVE_WEEKS, 10, NOW)
    master = ["h-etc-20261115.master.1.dar", "h-etc-20261115.master.2.dar"]
    assert deleted == sorted(set(dated(FIVE_WEEKS, datetime.date(2026, 11, 15))) - set(master))
    assert set(master) <= set(FIVE_WEEKS)
    # without chains (PURGE_KEEP_CHAINS=no) the master goes by its age
    assert retention.plan(FIVE_WEEKS, 10, NOW, keep_chains=False) == dated(FIVE_WEEKS, datetime.date(2026, 11, 15))


def test_a_master_of_only_old_incrementals_goes():
    """PURGE_LOCAL_ARCHIVES=3 on 26 Nov: kept incrementals (23-26 Nov) need
    the master of 22 Nov only; the one of 15 Nov goes with its chain."""
    deleted = retention.plan(FIVE_WEEKS, 3, NOW)
    assert deleted == [n for n in dated(FIVE_WEEKS, datetime.date(2026, 11, 22))
                       if not n.startswith("h-etc-20261122.master.")]
    assert "h-etc-20261115.master.1.dar" in deleted and "h-etc-20261122.master.2.dar" not in deleted


def test_each_target_chains_on_its_own():
    etc = nights(datetime.date(2026, 11, 13), TODAY, target="-etc")
    sites = nights(datetime.date(2026, 11, 13), TODAY, target="-home-sites", master_day="Tue")
    darnames = sorted({n for n in etc + sites if n.endswith(".dar")})
    deleted = retention.plan(darnames, 5, NOW)
    # -etc: young incrementals 21-26 Nov need the master of Sun 15 Nov and Sun 22 Nov
    # -home-sites: masters on Tuesdays 17 and 24 Nov; 21-23 Nov need the one of 17 Nov
    assert deleted == sorted([
        "h-etc-20261113.1.dar", "h-etc-20261114.1.dar", "h-etc-20261116.1.dar",
        "h-etc-20261117.1.dar", "h-etc-20261118.1.dar", "h-etc-20261119.1.dar",
        "h-etc-20261120.1.dar",
        "h-home-sites-20261113.1.dar", "h-home-sites-20261114.1.dar", "h-home-sites-20261115.1.dar",
        "h-home-sites-20261116.1.dar", "h-home-sites-20261118.1.dar", "h-home-sites-20261119.1.dar",
        "h-home-sites-20261120.1.dar"])


def test_backups_that_stopped_long_ago_leave_the_newest_of_each_kind():
    """Thirty days without a backup, PURGE_LOCAL_ARCHIVES=10: the newest
    chain (its master and every incremental on it), the newest dump of each
    database and the newest file of each other series stay."""
    old = nights(datetime.date(2026, 10, 5), datetime.date(2026, 10, 27))  # Sundays: 11, 18, 25 Oct
    names = old + ["h-notes.txt"]
    deleted = retention.plan(names, 10, NOW)
    kept = sorted(set(names) - set(deleted))
    assert kept == sorted(["h-etc-20261025.master.1.dar", "h-etc-20261025.master.2.dar",
                           "h-etc-20261026.1.dar", "h-etc-20261027.1.dar", "h-mysql-shop-20261027.sql.bz2",
                           "h-postgresql-all-20261027.sql.zst", "h-example-srv-www-20261027.tar.gz",
                           "h-notes.txt"])
    # and nothing with keep_newest off but what has no date
    assert sorted(set(names) - set(retention.plan(names, 10, NOW, keep_newest=False))) == ["h-notes.txt"]


def test_full_archives_keep_the_master_and_the_newest_after_it():
    """FS_INCREMENTAL=no (whole_chain off): every archive is full, so the
    newest chain is the master and the newest archive after it."""
    names = nights(datetime.date(2026, 10, 19), datetime.date(2026, 10, 29))
    dars = [n for n in names if n.endswith(".dar")]
    kept = set(dars) - set(retention.plan(dars, 10, NOW, whole_chain=False))
    assert kept == {"h-etc-20261025.master.1.dar", "h-etc-20261025.master.2.dar", "h-etc-20261029.1.dar"}
    kept = set(dars) - set(retention.plan(dars, 10, NOW))
    assert kept == {"h-etc-20261025.master.1.dar", "h-etc-20261025.master.2.dar", "h-etc-20261026.1.dar",
                    "h-etc-20261027.1.dar", "h-etc-20261028.1.dar", "h-etc-20261029.1.dar"}


def test_an_incomplete_master_or_a_future_date_is_not_the_newest():
    names = ["h-etc-20261018.master.1.dar", "h-etc-20261019.1.dar",
             "h-etc-20261025.master.2.dar",            # slice 1 missing: not a master to restore from
             "h-etc-20990101.master.1.dar",            # after the run's day
             "h-mysql-shop-20261001.sql.bz2", "h-mysql-shop-20990101.sql.bz2"]
    assert retention.plan(names, 10, NOW) == ["h-etc-20261025.master.2.dar"]


def test_a_name_is_dated_by_its_last_real_date():
    names = ["h-copy-of-20200101-20261120.tar.gz",     # 20261120: young
             "h-x-20261399.tar.gz",                    # no real date: never old
             "h-20200101-x-20261340.tar.gz",           # 20200101: old
             "h-nodate.tar.gz", "20200101"]
    assert retention.plan(names, 10, NOW, keep_newest=False) == ["20200101", "h-20200101-x-20261340.tar.gz"]
    # each is the newest of its own series, and the newest stays
    assert retention.plan(names, 10, NOW) == []


def test_only_well_formed_slices_chain():
    """Names that merely look like slices are dated files of their own
    series: an old one goes, and it holds no master."""
    names = ["h-etc-20261001.master.1.dar", "h-etc-20261120.1.dar",
             "h-etc-20261002.master.x.dar", "h-etc-20261003.dar", "h-etc-20261004.1.dar.partial",
             "h-etc-20261340.1.dar"]
    assert retention.plan(names, 10, NOW, keep_newest=False) == [
        "h-etc-20261002.master.x.dar", "h-etc-20261003.dar", "h-etc-20261004.1.dar.partial"]


def test_each_host_owns_only_its_own_names():
    """Host ``web`` backs up /etc; host ``web-db`` too, into the same
    remote directory: ``web-db-etc-...`` starts with ``web-`` but is not
    web's."""
    web = retention.Owner("web", ["web-etc"], modules=["example"], patterns=["*.log.gz"])
    mine = ["web-etc-20261120.master.1.dar", "web-etc-20261121.1.dar", "web-mysql-shop-20261120.sql.bz2",
            "web-postgresql-all-20261120.sql.zst", "web-example-srv-20261120.tar.gz", "app-20261120.log.gz"]
    theirs = ["web-db-etc-20261120.master.1.dar", "web-db-mysql-shop-20261120.sql.bz2",
              "web-db-example-srv-20261120.tar.gz", "other-etc-20261120.1.dar", ".web-etc-20261120.1.dar",
              "web-var-20261120.1.dar", "web-notes-20261120.txt", "", "web-etc-20261120.1.dar/"]
    assert web.filter(mine + theirs) == mine
    # PURGE_REMOTE_ALL_HOSTS: every host's archives, dumps and module files
    every = retention.Owner("web", ["web-etc"], modules=["example"], any_host=True)
    assert set(every.filter(mine + theirs)) == {
        "web-etc-20261120.master.1.dar", "web-etc-20261121.1.dar", "web-mysql-shop-20261120.sql.bz2",
        "web-postgresql-all-20261120.sql.zst", "web-example-srv-20261120.tar.gz",
        "web-db-etc-20261120.master.1.dar", "web-db-mysql-shop-20261120.sql.bz2",
        "web-db-example-srv-20261120.tar.gz", "other-etc-20261120.1.dar", "web-var-20261120.1.dar"}


def test_a_hosts_purge_of_a_shared_place():
    """Two hosts in one place, web's purge: only web's old names go."""
    names = (nights(datetime.date(2026, 10, 1), datetime.date(2026, 10, 10), host="web")
             + nights(datetime.date(2026, 10, 1), datetime.date(2026, 10, 10), host="web-db"))
    owner = retention.Owner("web", ["web-etc"], modules=["example"])
    deleted = retention.plan(owner.filter(names), 10, NOW)
    assert deleted and all(n.startswith("web-") and not n.startswith("web-db-") for n in deleted)
    survivors = sorted(n for n in names if n.startswith("web-") and not n.startswith("web-db-")
                       and n not in deleted)
    assert survivors == ["web-etc-20261004.master.1.dar", "web-etc-20261004.master.2.dar",
                         "web-etc-20261005.1.dar", "web-etc-20261006.1.dar", "web-etc-20261007.1.dar",
                         "web-etc-20261008.1.dar", "web-etc-20261009.1.dar", "web-etc-20261010.1.dar",
                         "web-example-srv-www-20261010.tar.gz", "web-mysql-shop-20261010.sql.bz2",
                         "web-postgresql-all-20261010.sql.zst"]


# -- config normalisation (config.load: bash reads the file) ----------------

BASE = """\
ADMIN_EMAIL=admin@example.org
BACKUP_DIR={tmp}/backup
BACKUP_MODULES=()
UPLOAD_MODULES=()
PURGE_LOCAL_ARCHIVES=10
PURGE_REMOTE_ARCHIVES=10
HOSTNAME=testhost
MODULES_D={tmp}/modules.d
LOCK_FILE={tmp}/packrat.lock
"""


@pytest.fixture
def conf(tmp_path):
    (tmp_path / "modules.d").mkdir()
    path = tmp_path / "packrat.conf"

    def load(text="", overrides=None, base=BASE, **modules_d):
        path.write_text(base.format(tmp=tmp_path) + text)
        path.chmod(0o600)
        for name, body in modules_d.items():
            (tmp_path / "modules.d" / (name + ".conf")).write_text(body)
        return config.load(str(path), overrides)

    load.path = str(path)
    load.modules_d = tmp_path / "modules.d"
    return load


def problems(conf, *args, **kw):
    with pytest.raises(ConfigError) as failed:
        conf(*args, **kw)
    return failed.value.problems


def effective(settings):
    """check's lines by name: 'value    # origin'."""
    return dict(line.split("=", 1) for line in config.effective(settings) if not line.startswith("#"))


def test_values_take_their_types(conf):
    s = conf("FS_INCREMENTAL=no\nPURGE_KEEP_CHAINS=yes\nUPLOAD_RETRY_WAIT=0.5\nSMTP_TLS=starttls\n"
             "FS_TARGETS=('/etc' '/home/with space')\n")
    assert s["PURGE_LOCAL_ARCHIVES"] == 10 and s["UPLOAD_RETRY_WAIT"] == 0.5
    assert s["FS_INCREMENTAL"] is False and s["PURGE_KEEP_CHAINS"] is True
    assert s["SMTP_TLS"] == "starttls"
    assert s["FS_TARGETS"] == ["/etc", "/home/with space"]
    assert s["BACKUP_MODULES"] == [] and s["UPLOAD_MODULES"] == []


def test_shapes_are_read_as_bash_reads_them(conf):
    """An array of one element for a scalar is that element; a scalar for
    an array is an array of it; an empty scalar for an array is none."""
    s = conf("PURGE_REMOTE_ARCHIVES=(7)\nFS_TARGETS=/etc\nMYSQL_TARGETS=''\nSSH_HOST=('backup.example.org')\n")
    assert s["PURGE_REMOTE_ARCHIVES"] == 7
    assert s["FS_TARGETS"] == ["/etc"] and s["MYSQL_TARGETS"] == []
    assert s["SSH_HOST"] == "backup.example.org"


def test_an_empty_value_takes_the_default(conf):
    s = conf('SSH_PORT=""\nUPLOAD_RETRIES=\nFS_MASTER_FREQ=""\nMYSQL_PORT=""\nSMTP_HOST=""\n')
    assert (s["SSH_PORT"], s["UPLOAD_RETRIES"], s["FS_MASTER_FREQ"]) == (22, 4, "weekly")
    assert s["MYSQL_PORT"] is None    # no default: unset
    assert s["SMTP_HOST"] == ""       # a string: empty is a value
    assert s["FS_SLICE_SIZE"] == "1000M" and s["FS_METHOD"] == "dar"   # not in the file at all


def test_a_monthly_master_day_is_two_digits(conf):
    assert conf("FS_MASTER_FREQ=monthly\nFS_MASTER_DAY=1\n")["FS_MASTER_DAY"] == "01"
    lines = problems(conf, "FS_MASTER_FREQ=monthly\nFS_MASTER_DAY=32\n")
    assert len(lines) == 1 and "FS_MASTER_DAY='32'" in lines[0] and conf.path in lines[0]
    lines = problems(conf, "FS_MASTER_DAY=Sunday\n")
    assert len(lines) == 1 and "FS_MASTER_DAY='Sunday'" in lines[0]


@pytest.mark.parametrize("value", ["'\u0663'", "1_000", "' 7 '", "nan", "1e3", "0x10", "-1"])
def test_numbers_are_plain_ascii_digits(conf, value):
    lines = problems(conf, "UPLOAD_RETRIES=%s\n" % value)
    assert len(lines) == 1 and "UPLOAD_RETRIES=" in lines[0] and conf.path in lines[0], lines


def test_an_array_for_a_scalar_is_named_with_its_file(conf):
    lines = problems(conf, "SSH_HOST=('a.example.org' 'b.example.org')\nMYSQL_PASS=('s3cr3t-one' 'two')\n")
    assert len(lines) == 2
    assert all(line.startswith(conf.path + ": ") for line in lines)
    assert any("SSH_HOST is an array of 2 values" in line for line in lines)
    assert any("MYSQL_PASS is an array of 2 values" in line for line in lines)
    assert not any("s3cr3t" in line for line in lines)   # a secret's value is never shown


def test_every_problem_at_once_and_required_settings(conf):
    base = BASE.replace("BACKUP_DIR={tmp}/backup\n", "").replace("PURGE_REMOTE_ARCHIVES=10\n", "")
    lines = problems(conf, "PURGE_LOCAL_ARCHIVES=abc\nFS_MASTER_FREQ=daily\nSMTP_TLS=yes\n", base=base)
    assert "Error: Configuration setting BACKUP_DIR is not defined in %s" % conf.path in lines
    assert "Error: Configuration setting PURGE_REMOTE_ARCHIVES is not defined in %s" % conf.path in lines
    assert any("PURGE_LOCAL_ARCHIVES='abc'" in line and "whole number" in line for line in lines)
    assert any("FS_MASTER_FREQ='daily'" in line and "weekly, monthly" in line for line in lines)
    assert any("SMTP_TLS='yes'" in line and "no, starttls, ssl" in line for line in lines)
    assert len(lines) == 5, lines


def test_an_empty_backup_modules_is_an_upload_only_setup(conf):
    """The original called the stock BACKUP_MODULES=() "not defined"."""
    assert conf()["BACKUP_MODULES"] == []


def test_each_value_names_its_origin(conf):
    s = conf("SSH_BWLIMIT=100\nMYSQL_PASS=s3cr3t-of-the-fast-tier\n",
             overrides={"PURGE_LOCAL_ARCHIVES": "3", "BACKUP_MODULES": []},
             ssh="[ssh]\nSSH_PORT = 2222\nSSH_BWLIMIT = 50\n")
    ssh_conf = str(conf.modules_d / "ssh.conf")
    lines = effective(s)
    assert lines["SSH_PORT"] == "2222    # %s" % ssh_conf
    assert lines["SSH_BWLIMIT"] == "50    # %s" % ssh_conf          # modules.d over the file
    assert lines["PURGE_LOCAL_ARCHIVES"] == "3    # command line"
    assert lines["BACKUP_MODULES"] == "()    # command line"
    assert lines["PURGE_REMOTE_ARCHIVES"] == "10    # %s" % conf.path
    assert lines["MYSQL_PASS"] == "****    # %s" % conf.path
    assert lines["FTP_PORT"] == "21    # the built-in default"
    assert s["SSH_PORT"] == 2222 and s["PURGE_LOCAL_ARCHIVES"] == 3


def test_a_modules_d_problem_names_its_file_and_setting(conf):
    lines = problems(conf, ftp="FTP_PORT = 99999\n")
    ftp_conf = str(conf.modules_d / "ftp.conf")
    assert len(lines) == 1 and lines[0].startswith(ftp_conf + ": FTP_PORT='99999'"), lines


# -- the guard of the fast tier (tests/conftest.py) -------------------------

def test_the_guard_refuses_a_listening_socket_and_a_server_program():
    with conftest._NoServers() as guard:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(RuntimeError, match="listens on a network socket"):
                sock.listen()
        with pytest.raises(RuntimeError, match="starts the server program sshd"):
            subprocess.run(["/usr/sbin/sshd", "-D"])
        assert subprocess.run(["true"]).returncode == 0   # other programs run
    assert len(guard.seen) == 2


def test_the_guard_finds_server_fixtures_through_other_fixtures():
    def fixture(module):
        return [types.SimpleNamespace(func=types.SimpleNamespace(__module__=module))]
    defs = {"tmp_path": fixture("_pytest.tmpdir"), "penv": fixture("tests.conftest"),
            "smtp": fixture("tests.conftest"), "smtp_server": fixture("tests.conftest"),
            "sshd": fixture("tests.servers.sshd")}
    item = types.SimpleNamespace(fixturenames=["penv", "tmp_path", "smtp", "smtp_server"],
                                 _fixtureinfo=types.SimpleNamespace(name2fixturedefs=defs))
    assert conftest._server_fixtures(item) == ["smtp_server"]
    item.fixturenames = ["tmp_path", "sshd"]
    assert conftest._server_fixtures(item) == ["sshd"]
    item.fixturenames = ["tmp_path"]
    assert conftest._server_fixtures(item) == []
