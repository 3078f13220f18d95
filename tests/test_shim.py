"""Bash modules run unchanged through the shim: custom modules in the
original's style, NEW_BACKUPS both ways, the remote purge through list_/
purge_, which implementation a name runs, failures and mail, and the
shipped modules/example.sh."""
import datetime
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from tests.conftest import PACKRAT, ROOT

DATE = "20261126"  # a Thursday; not the machine's date, so $TODAY must come from packrat
NOW = datetime.date(2026, 11, 26)


def day(n):
    return (NOW - datetime.timedelta(days=n)).strftime("%Y%m%d")


def module(penv, filename, text):
    path = penv.module_path / filename
    path.write_text(text)
    return path


def touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# Modules in the original's style: a helper in one file, used by modules of
# another; config arrays, verbose, diemail, $BACKUP_DIR, $TODAY, $HOSTNAME.
HELPERS = r'''
# shared helpers, as a site would keep them in their own file
site_archive() {   # NAME -> full path of today's archive
    echo "$BACKUP_DIR/$HOSTNAME-notes-$1-$TODAY.txt"
}
'''

NOTES = r'''
mod_notes() {
    for n in "${NOTES_ITEMS[@]}"; do
        f=$(site_archive "$n")
        verbose "[NOTES] writing $n to $(basename $f)"
        echo "$n made on $HOSTNAME at $TODAY ($DOW, day $DOM) extra=${NOTES_EXTRA[*]}" > "$f" || diemail "cannot write $f"
        NEW_BACKUPS="$NEW_BACKUPS $f"
    done
}
'''

SHELF = r'''
# an upload module: copies into $SHELF_DIR, logs what it is asked to do
mod_shelf() {
    [ -d "$SHELF_DIR" ] || diemail "Shelf directory $SHELF_DIR is missing"
    echo "$NEW_BACKUPS" > "$SHELF_LOG.new"
    for f in $NEW_BACKUPS; do
        verbose "[SHELF] uploading $(basename $f)"
        cp "$f" "$SHELF_DIR/" || diemail "copy of $f failed"
    done
}
list_shelf() {
    ls -1 "$SHELF_DIR"
}
purge_shelf() {
    echo "$1" >> "$SHELF_LOG.purged"
    rm -f "$SHELF_DIR/$1"
}
'''


@pytest.fixture
def site(penv, tmp_path):
    module(penv, "00-helpers.sh", HELPERS)
    module(penv, "notes.sh", NOTES)
    module(penv, "shelf.sh", SHELF)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.settings.update(NOTES_ITEMS=["alpha", "beta"], SHELF_DIR=str(shelf),
                         SHELF_LOG=str(tmp_path / "shelf-log"), LOCAL_DIR=str(nas))
    penv.shelf, penv.nas, penv.log = shelf, nas, tmp_path / "shelf-log"
    return penv


def test_bash_backup_module_feeds_python_local_upload(site):
    (site.modules_d / "notes.conf").write_text("[notes]\nNOTES_EXTRA = one, two\n")
    site.write(BACKUP_MODULES=["notes"], UPLOAD_MODULES=["local"])
    proc = site.run("-v", date=DATE, env={"LC_ALL": "C"}, check=0)
    names = ["testhost-notes-alpha-%s.txt" % DATE, "testhost-notes-beta-%s.txt" % DATE]
    for name in names:
        made = site.backup_dir / name
        assert (site.nas / name).read_bytes() == made.read_bytes()
    assert sorted(os.listdir(site.nas)) == sorted(names)
    text = (site.backup_dir / names[0]).read_text()
    # the run's date (not the machine's), weekday and day, host, modules.d array
    assert text == "alpha made on testhost at %s (Thu, day 26) extra=one two\n" % DATE
    assert "[NOTES] writing alpha to testhost-notes-alpha-%s.txt" % DATE in proc.stdout
    assert "Bash backup module notes" in proc.stdout
    # without -v, verbose prints nothing
    quiet = site.run(date=DATE, check=0)
    assert "[NOTES]" not in quiet.stdout


def test_python_side_files_feed_bash_upload_module(site):
    files = [touch(site.backup_dir / ("testhost-etc-%s.1.dar" % DATE), os.urandom(3000)),
             touch(site.backup_dir / ("testhost-mysql-db-%s.sql.bz2" % DATE), os.urandom(700))]
    touch(site.backup_dir / ("testhost-etc-%s.1.dar" % day(1)))
    site.write(UPLOAD_MODULES=["shelf"])
    proc = site.run("-v", "-U", DATE, date=DATE, check=0)
    assert sorted(os.listdir(site.shelf)) == sorted(f.name for f in files)
    for f in files:
        assert (site.shelf / f.name).read_bytes() == f.read_bytes()
    # every new file of the run, space separated, as before
    assert (site.tmp / "shelf-log.new").read_text() == " ".join(sorted(str(f) for f in files)) + "\n"
    assert "[SHELF] uploading testhost-etc-%s.1.dar" % DATE in proc.stdout
    assert "Bash upload module shelf" in proc.stdout


def test_bash_backup_feeds_bash_upload_and_later_modules_see_new_backups(site):
    module(site, "more.sh", r'''
mod_more() {
    echo "$NEW_BACKUPS" > "$SHELF_LOG.seen"
    f="$BACKUP_DIR/$HOSTNAME-more-$TODAY.txt"; echo more > "$f"
    NEW_BACKUPS="$NEW_BACKUPS $f"
}
''')
    site.write(BACKUP_MODULES=["notes", "more"], UPLOAD_MODULES=["shelf"])
    site.run(date=DATE, check=0)
    notes = ["%s/testhost-notes-%s-%s.txt" % (site.backup_dir, n, DATE) for n in ("alpha", "beta")]
    # the second module sees the first one's files in NEW_BACKUPS
    assert (site.tmp / "shelf-log.seen").read_text().split() == notes
    sent = (site.tmp / "shelf-log.new").read_text().split()
    assert sent == notes + ["%s/testhost-more-%s.txt" % (site.backup_dir, DATE)]
    assert (site.shelf / ("testhost-more-%s.txt" % DATE)).read_text() == "more\n"


def test_bash_upload_module_list_and_purge_drive_the_remote_purge(site):
    old = touch(site.shelf / ("testhost-etc-%s.1.dar" % day(20)))
    old_db = touch(site.shelf / ("testhost-mysql-all-%s.sql.bz2" % day(11)))
    young = touch(site.shelf / ("testhost-etc-%s.1.dar" % day(3)))
    other = touch(site.shelf / ("otherhost-etc-%s.1.dar" % day(30)))
    undated = touch(site.shelf / "testhost-README")
    touch(site.shelf / ("testhost-mysql-all-%s.sql.bz2" % day(1)))  # the newest dump stays
    site.write(UPLOAD_MODULES=["shelf"], FS_TARGETS=["/etc"])
    proc = site.run("-v", "-P", "-r", "10", date=DATE, check=0)
    assert not old.exists() and not old_db.exists()
    assert young.exists() and other.exists() and undated.exists()
    assert sorted((site.tmp / "shelf-log.purged").read_text().split()) == sorted([old.name, old_db.name])
    assert "Purging remote archives older than 10 days on shelf (Bash module" in proc.stdout


EVIL = r'''
mod_evil() { :; }
list_evil() {
    echo "../../testhost-etc-%(old)s.1.dar"
    echo "/tmp/testhost-etc-%(old)s.1.dar"
    echo "sub/testhost-etc-%(old)s.1.dar"
    echo ".."
    echo "."
    echo ""
    echo "../../etc/passwd"
    echo "/etc/passwd"
    # two words on one line: read as words, as $(list_evil) did
    echo "testhost-a-%(old)s.1.dar testhost-b-%(old)s.1.dar testhost-a-%(young)s.1.dar testhost-b-%(young)s.1.dar"
}
purge_evil() {
    echo "[$1]" >> "$EVIL_LOG"
}
'''


def test_listing_with_paths_and_dots_purges_none_of_them(penv, tmp_path):
    module(penv, "evil.sh", EVIL % {"old": day(40), "young": day(1)})
    log = tmp_path / "evil.log"
    penv.write(UPLOAD_MODULES=["evil"], EVIL_LOG=str(log), PURGE_REMOTE_ALL_HOSTS="yes")
    penv.run("-P", "-r", "10", date=DATE, check=0)
    # only the two plain names were handed to purge_evil
    assert log.read_text().splitlines() == ["[testhost-a-%s.1.dar]" % day(40), "[testhost-b-%s.1.dar]" % day(40)]


def test_bash_remote_refuses_unsafe_names_itself(penv, tmp_path):
    """The second guard: BashRemote.delete never runs purge_NAME with a
    name that is not a plain file name, whoever calls it."""
    from pypackrat import config, shim
    from pypackrat.context import Context, Options
    from pypackrat.errors import PackratError
    module(penv, "evil.sh", EVIL % {"old": day(40), "young": day(1)})
    logfile = tmp_path / "evil.log"
    penv.write(EVIL_LOG=str(logfile))
    settings = config.load(str(penv.config_path))
    ctx = Context(settings, Options())
    remote = shim.BashRemote(ctx, "evil", str(penv.module_path / "evil.sh"))
    words = remote.list()
    assert "../../etc/passwd" in words and "/etc/passwd" in words and ".." in words
    for bad in ("../../etc/passwd", "/etc/passwd", "..", ".", "", "a/b", "a\nb"):
        with pytest.raises(PackratError, match="not a plain file name"):
            remote.delete(bad)
    assert not logfile.exists()
    remote.delete("plain-name")
    assert logfile.read_text() == "[plain-name]\n"


STOCK = r'''
# A site's old copy of the stock modules, still in the module path.
mod_filesystem() { echo "bash filesystem" >> "$MARKER"; }
mod_mysql() { echo "bash mysql" >> "$MARKER"; }
mod_local() {
    echo "bash local" >> "$MARKER"
    for f in $NEW_BACKUPS; do cp "$f" "$LOCAL_DIR/bash-copy-$(basename $f)"; done
}
list_local() { ls -1 "$LOCAL_DIR"; }
purge_local() { rm -f "$LOCAL_DIR/$1"; }
function mod_ssh { echo "bash ssh" >> "$MARKER"; }
mod_ftp () { echo "bash ftp" >> "$MARKER"; }
function mod_s3() { echo "bash s3" >> "$MARKER"; }
'''


def test_stock_names_in_module_path_run_python_unless_shell_modules(site):
    module(site, "stock.sh", STOCK)
    marker = site.tmp / "marker"
    f = touch(site.backup_dir / ("testhost-etc-%s.1.dar" % DATE), os.urandom(100))
    site.write(UPLOAD_MODULES=["local"], MARKER=str(marker))
    plan = site.run("-n", "-U", DATE, date=DATE, check=0)
    assert "Python upload module local: pypackrat.upload.local" in plan.stdout
    site.run("-U", DATE, date=DATE, check=0)
    assert not marker.exists()
    assert os.listdir(site.nas) == [f.name]
    # SHELL_MODULES: the site's patched Bash module runs instead
    os.unlink(site.nas / f.name)
    site.write(SHELL_MODULES=["local"])
    plan = site.run("-n", "-U", DATE, date=DATE, check=0)
    assert "Bash upload module local: %s" % (site.module_path / "stock.sh") in plan.stdout
    site.run("-U", DATE, date=DATE, check=0)
    assert marker.read_text() == "bash local\n"
    assert os.listdir(site.nas) == ["bash-copy-" + f.name]


@pytest.mark.fast
def test_every_ported_name_resolves_to_python_beside_bash_definitions(tmp_path):
    """Whatever ports exist now: a Bash definition of the same name in the
    module path does not change the resolution; SHELL_MODULES does."""
    from pypackrat import plugins
    from pypackrat.config import Settings
    (tmp_path / "stock.sh").write_text(STOCK)
    values = {"MODULE_PATH": str(tmp_path), "SHELL_MODULES": []}
    settings = Settings(values, {}, {}, str(tmp_path / "packrat.conf"))
    ported = []
    for role in plugins.ROLES:
        for name, dotted in plugins.available(role).items():
            source = os.path.join(ROOT, *dotted.split(".")) + ".py"
            got = plugins.resolve(settings, name, role)
            assert os.path.exists(source)
            ported.append(name)
            assert (got.kind, got.where) == ("Python", dotted)
    assert {"local", "ssh", "ftp", "s3", "filesystem", "mysql", "postgresql"} <= set(ported)
    values["SHELL_MODULES"] = ["local", "filesystem", "ssh", "ftp", "s3", "mysql"]
    for name in values["SHELL_MODULES"]:
        role = "backup" if name in plugins.available("backup") else "upload"
        got = plugins.resolve(settings, name, role)
        assert (got.kind, got.where) == ("Bash", str(tmp_path / "stock.sh"))
    # a name the Bash files do not define: its port
    pg = plugins.resolve(settings, "postgresql", "backup")
    assert (pg.kind, pg.where) == ("Python", plugins.available("backup")["postgresql"])


@pytest.mark.fast
def test_find_recognises_definition_styles_and_the_last_file_wins(tmp_path):
    from pypackrat import shim
    from pypackrat.config import Settings
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "1.sh").write_text("mod_one() {\n:\n}\nfunction mod_two {\n:\n}\n"
                            "  function mod_three() { :; }\nmod_four ()\n{\n:\n}\n"
                            "function mod_five { :; }\n# mod_six() { commented out; }\n"
                            "echo mod_seven\nmy_mod_eight() { :; }\n")
    (a / "2.sh").write_text("mod_one() { echo patched; }\n")
    (b / "3.sh").write_text("mod_two() { echo later dir; }\n")
    (a / "ignored.txt").write_text("mod_nine() { :; }\n")
    settings = Settings({"MODULE_PATH": "%s:%s" % (a, b)}, {}, {}, "x")
    assert shim.find(settings, "one", "backup") == str(a / "2.sh")
    assert shim.find(settings, "two", "backup") == str(b / "3.sh")
    for name in ("three", "four", "five"):
        assert shim.find(settings, name, "backup") == str(a / "1.sh")
    for name in ("six", "seven", "eight", "nine", "on", "fiv"):
        assert shim.find(settings, name, "backup") is None


def test_diemail_in_bash_module_exit_1_and_exactly_one_mail(site):
    module(site, "broken.sh", r'''
mod_broken() {
    verbose "[BROKEN] starting"
    [ -d "$BROKEN_DIR" ] || diemail "Cannot find $BROKEN_DIR on $HOSTNAME"
    echo "not reached" > "$BACKUP_DIR/not-reached"
}
''')
    site.write(BACKUP_MODULES=["broken", "notes"], UPLOAD_MODULES=["local"],
               BROKEN_DIR="/nonexistent/dir")
    proc = site.run(date=DATE, check=1)
    assert "Cannot find /nonexistent/dir on testhost" in proc.stderr
    assert not (site.backup_dir / "not-reached").exists()
    assert len(site.mails()) == 1
    msg = site.mails()[0]
    assert msg["Subject"] == "Packrat: Error"
    body = site.smtp.bodies()[0]
    assert "Cannot find /nonexistent/dir on testhost" in body
    assert "WARNING: The backup process was aborted" in body
    # the run went on: the other module's archives were made and uploaded
    assert (site.nas / ("testhost-notes-alpha-%s.txt" % DATE)).exists()


@pytest.mark.parametrize("body, expected", [
    ('false\n', "backup module failing: mod_failing exited with status 1"),
    ('return 3\n', "backup module failing: mod_failing exited with status 3"),
    ('x=$(die "died in a subshell")\necho "$x"\n', "died in a subshell"),
    ('die "plain die"\n', "plain die"),
    ('exit 4\n', "backup module failing: mod_failing exited with status 4"),
    ('kill -KILL $BASHPID\n', "backup module failing: mod_failing was killed by signal 9"),
])
def test_failing_bash_module_is_one_failure(site, body, expected):
    module(site, "failing.sh", "mod_failing() {\n%s}\n" % body)
    site.write(BACKUP_MODULES=["failing"], UPLOAD_MODULES=["local"])
    proc = site.run(date=DATE, check=1)
    assert expected in proc.stderr
    assert len(site.mails()) == 1
    assert expected in site.smtp.bodies()[0]
    assert "Traceback" not in proc.stderr


def test_failing_bash_upload_and_list_are_failures(site):
    module(site, "badup.sh", r'''
mod_badup() { diemail "upload broke"; }
list_badup() { die "listing broke"; }
purge_badup() { :; }
''')
    touch(site.backup_dir / ("testhost-etc-%s.1.dar" % DATE))
    site.write(UPLOAD_MODULES=["badup"])
    proc = site.run("-U", DATE, date=DATE, check=1)
    assert "upload broke" in proc.stderr and "listing broke" in proc.stderr
    assert len(site.mails()) == 1
    assert "upload broke" in site.smtp.bodies()[0] and "listing broke" in site.smtp.bodies()[0]


def test_email_is_mailed_at_once_and_is_not_a_failure(site):
    flag = site.tmp / "mailed"
    module(site, "notice.sh", r'''
mod_notice() {
    email "Disk nearly full on $HOSTNAME\nsecond line"
    # wait until the test has seen the mail arrive: it must go while we run
    for i in $(seq 1 300); do [ -e "$NOTICE_FLAG" ] && break; sleep 0.1; done
    [ -e "$NOTICE_FLAG" ] || die "the notice was not mailed while the module ran"
}
''')
    site.write(BACKUP_MODULES=["notice"], NOTICE_FLAG=str(flag))
    env = dict(os.environ, PACKRAT_DATE=DATE)
    proc = subprocess.Popen([PACKRAT, "-c", str(site.config_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if site.mails():
                flag.write_text("")
                break
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(site.mails()) == 1
    assert site.mails()[0]["Subject"] == "Packrat: Error"
    assert site.smtp.bodies()[0].replace("\r\n", "\n").rstrip("\n") == "Disk nearly full on testhost\nsecond line"


def test_module_output_reaches_packrat_output_as_it_happens(site):
    flag = site.tmp / "seen"
    module(site, "chatty.sh", r'''
mod_chatty() {
    echo "first line"
    for i in $(seq 1 300); do [ -e "$CHATTY_FLAG" ] && break; sleep 0.1; done
    [ -e "$CHATTY_FLAG" ] || die "nobody saw the first line while the module ran"
    echo "second line"
}
''')
    site.write(BACKUP_MODULES=["chatty"], CHATTY_FLAG=str(flag))
    env = dict(os.environ, PACKRAT_DATE=DATE)
    proc = subprocess.Popen([PACKRAT, "-c", str(site.config_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "first line\n"
        flag.write_text("")
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert rest == "second line\n"


def test_secrets_reach_the_module_but_not_its_command_line(site):
    module(site, "secret.sh", r'''
mod_secret() {
    tr '\0' ' ' < /proc/$$/cmdline > "$SECRET_OUT.cmdline"
    echo "$FTPX_PASS|$CONF_PASS" > "$SECRET_OUT.values"
}
''')
    (site.modules_d / "ftpx.conf").write_text("[ftpx]\nFTPX_PASS = 'modules-d s3cret'\n")
    site.write(BACKUP_MODULES=["secret"], CONF_PASS="conf-s3cret", SECRET_OUT=str(site.tmp / "out"))
    site.run(date=DATE, check=0)
    assert (site.tmp / "out.values").read_text() == "modules-d s3cret|conf-s3cret\n"
    cmdline = (site.tmp / "out.cmdline").read_text()
    assert "shim.sh" in cmdline and "s3cret" not in cmdline


def test_command_line_overrides_reach_bash_modules(site):
    module(site, "show.sh", r'''
mod_show() { echo "${BACKUP_MODULES[*]}|$PURGE_LOCAL_ARCHIVES|$OPT_VERBOSE" > "$SHOW_OUT"; }
''')
    site.write(BACKUP_MODULES=["notes"], SHOW_OUT=str(site.tmp / "show"))
    site.run("-m", "show", "-p", "7", date=DATE, check=0)
    assert (site.tmp / "show").read_text() == "show|7|\n"
    site.run("-v", "-m", "show,notes", date=DATE, check=0)
    assert (site.tmp / "show").read_text() == "show notes|10|1\n"


def test_module_that_names_a_missing_file_fails(site):
    module(site, "liar.sh", r'''
mod_liar() { NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/never-made-$TODAY.tar"; }
''')
    site.write(BACKUP_MODULES=["liar"], UPLOAD_MODULES=["local"])
    proc = site.run(date=DATE, check=1)
    assert "never-made-%s.tar, which is not a file" % DATE in proc.stderr
    assert len(site.mails()) == 1


def test_check_reports_a_name_nothing_defines(site):
    site.write(BACKUP_MODULES=["notes", "nosuch"], UPLOAD_MODULES=["local", "nowhere"])
    proc = site.run("check", check=1)
    assert "no backup module named 'nosuch'" in proc.stderr
    assert "mod_nosuch" in proc.stderr and str(site.module_path) in proc.stderr
    assert "no upload module named 'nowhere'" in proc.stderr
    assert "notes" not in proc.stderr
    # and nothing ran: the nightly run refuses the same config before starting
    run = site.run(date=DATE, check=1)
    assert "nosuch" in run.stderr
    assert os.listdir(site.backup_dir) == []
    site.write(BACKUP_MODULES=["notes"], UPLOAD_MODULES=["shelf"])
    ok = site.run("check", check=0)
    assert "# Bash backup module notes: %s" % (site.module_path / "notes.sh") in ok.stdout
    assert "# Bash upload module shelf: %s" % (site.module_path / "shelf.sh") in ok.stdout


def test_upload_module_without_list_function_is_not_purged(site):
    module(site, "pushonly.sh", 'mod_pushonly() { :; }\n')
    old = touch(site.tmp / "x" / ("testhost-etc-%s.1.dar" % day(40)))
    site.write(UPLOAD_MODULES=["pushonly"])
    proc = site.run("-P", date=DATE, check=0)
    assert "defines no list_pushonly" in proc.stderr
    assert old.exists()


# -- modules/example.sh, the shipped template --------------------------------------

@pytest.fixture
def example(penv, tmp_path):
    shutil.copy(os.path.join(ROOT, "modules", "example.sh"), penv.module_path)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(20000))
    (src / "sub" / "b.txt").write_text("hello\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    penv.settings.update(EXAMPLE_TARGETS=[str(src), str(tmp_path / "missing")],
                         EXAMPLE_UPLOAD_DIR=str(remote))
    penv.src, penv.remote = src, remote
    return penv


def test_example_modules_back_up_upload_and_restore(example, tmp_path):
    example.write(BACKUP_MODULES=["example"], UPLOAD_MODULES=["example_upload"])
    proc = example.run("-v", date=DATE, check=0)
    name = "testhost-example%s-%s.tar.gz" % (str(example.src).replace("/", "-"), DATE)
    assert os.listdir(example.backup_dir) == [name]
    assert os.listdir(example.remote) == [name]
    assert "[EXAMPLE] backing up %s to %s" % (example.src, name) in proc.stdout
    assert "does not exist, skipping" in proc.stdout
    restored = tmp_path / "restored"
    with tarfile.open(example.remote / name) as tar:
        tar.extractall(restored, filter="data")
    back = restored / str(example.src).lstrip("/")
    assert (back / "a.bin").read_bytes() == (example.src / "a.bin").read_bytes()
    assert (back / "sub" / "b.txt").read_bytes() == b"hello\n"


def test_example_upload_list_and_purge(example):
    old = touch(example.remote / ("testhost-example-x-%s.tar.gz" % day(12)))
    young = touch(example.remote / ("testhost-example-x-%s.tar.gz" % day(2)))
    example.write(BACKUP_MODULES=["example"], UPLOAD_MODULES=["example_upload"])
    example.run("-P", date=DATE, check=0)
    assert not old.exists() and young.exists()


def test_example_failures_mail_once(example, tmp_path):
    example.write(BACKUP_MODULES=["example"], UPLOAD_MODULES=["example_upload"],
                  EXAMPLE_UPLOAD_DIR=str(tmp_path / "unmounted"))
    proc = example.run(date=DATE, check=1)
    assert "example_upload: %s is not a directory" % (tmp_path / "unmounted") in proc.stderr
    assert len(example.mails()) == 1
    # the backup itself was made; nothing partial is left behind
    assert [n for n in os.listdir(example.backup_dir) if n.endswith(".tar.gz")]
    assert not [n for n in os.listdir(example.backup_dir) if "partial" in n]


def test_purges_run_in_one_shell_and_a_failing_purge_is_one_failure(penv, tmp_path):
    remote = tmp_path / "remote"
    names = ["testhost-etc-%s.1.dar" % day(d) for d in (30, 20, 15)]
    for n in names:
        touch(remote / n)
    newest = touch(remote / ("testhost-etc-%s.1.dar" % day(1))).name  # always kept
    module(penv, "picky.sh", r'''
mod_picky() { :; }
list_picky() { ls -1 "$PICKY_DIR"; }
purge_picky() {
    echo "$$ $1" >> "$PICKY_LOG"
    [ "$1" = "$PICKY_STUCK" ] && return 5
    rm -f "$PICKY_DIR/$1"
}
''')
    log = tmp_path / "picky.log"
    penv.write(UPLOAD_MODULES=["picky"], PICKY_DIR=str(remote), PICKY_LOG=str(log), PICKY_STUCK="",
               FS_TARGETS=["/etc"])
    penv.run("-P", date=DATE, check=0)
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sorted(c[1] for c in calls) == sorted(names)
    assert len({c[0] for c in calls}) == 1  # one shell for the whole purge, as the original
    assert os.listdir(remote) == [newest]
    # a purge_ that fails: exit 1, one mail naming the file
    for n in names:
        touch(remote / n)
    log.unlink()
    penv.write(PICKY_STUCK=names[0])
    proc = penv.run("-P", date=DATE, check=1)
    expected = "upload module picky: purge_picky %s exited with status 5" % names[0]
    assert expected in proc.stderr
    assert len(penv.mails()) == 1 and expected in penv.smtp.bodies()[0]


def test_dry_run_runs_no_bash_module_and_deletes_nothing(site):
    old = touch(site.shelf / ("testhost-etc-%s.1.dar" % day(20)))
    newer = touch(site.shelf / ("testhost-etc-%s.1.dar" % day(1)))
    touch(site.backup_dir / ("testhost-etc-%s.1.dar" % DATE))
    site.write(BACKUP_MODULES=["notes"], UPLOAD_MODULES=["shelf"], FS_TARGETS=["/etc"])
    proc = site.run("-n", date=DATE, check=0)
    assert "[dry run] Bash backup module notes: %s" % (site.module_path / "notes.sh") in proc.stdout
    assert "[dry run] Bash upload module shelf: %s" % (site.module_path / "shelf.sh") in proc.stdout
    assert "[dry run] would run mod_notes of the Bash module" in proc.stdout
    # list_shelf runs (it only reads), so the plan names what a purge would delete
    assert "[dry run] would delete %s from shelf" % old.name in proc.stdout
    assert old.exists()
    assert not (site.tmp / "shelf-log.purged").exists()
    assert os.listdir(site.backup_dir) == ["testhost-etc-%s.1.dar" % DATE]
    proc = site.run("-n", "-U", DATE, date=DATE, check=0)
    assert "would upload %s/testhost-etc-%s.1.dar with mod_shelf" % (site.backup_dir, DATE) in proc.stdout
    assert sorted(os.listdir(site.shelf)) == sorted([old.name, newer.name])


# -- the same upload behaviour from a Python and a Bash upload module ----------
# (until tests/test_upload_conformance.py exists: the local module's checks,
# run against modules/example.sh's example_upload through the shim too)

@pytest.mark.parametrize("upload", ["local", "example_upload"])
def test_upload_module_contract_python_and_bash(penv, tmp_path, upload):
    shutil.copy(os.path.join(ROOT, "modules", "example.sh"), penv.module_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    penv.write(UPLOAD_MODULES=[upload], LOCAL_DIR=str(remote), EXAMPLE_UPLOAD_DIR=str(remote),
               FS_TARGETS=["/etc"])
    plan = penv.run("-n", date=DATE, check=0)
    kind = "Python" if upload == "local" else "Bash"
    assert "[dry run] %s upload module %s" % (kind, upload) in plan.stdout
    # upload: every file of the date, byte for byte, nothing else, no partial left
    sizes = [0, 1, 65536, 1 << 20]
    files = [touch(penv.backup_dir / ("testhost-f%d-%s.bin" % (i, DATE)), os.urandom(n))
             for i, n in enumerate(sizes)]
    touch(penv.backup_dir / ("testhost-other-%s.bin" % day(1)))
    penv.run("-U", DATE, date=DATE, check=0)
    assert sorted(os.listdir(remote)) == sorted(f.name for f in files)
    for f in files:
        assert (remote / f.name).read_bytes() == f.read_bytes()
    # again: replaced, not duplicated
    files[1].write_bytes(b"changed")
    penv.run("-U", DATE, date=DATE, check=0)
    assert (remote / files[1].name).read_bytes() == b"changed"
    assert len(os.listdir(remote)) == len(files)
    # purge: old names of this host go, young, foreign and undated stay
    old = [touch(remote / ("testhost-etc-%s.1.dar" % day(d))) for d in (11, 40)]
    keep = [touch(remote / ("testhost-etc-%s.1.dar" % day(10))),
            touch(remote / ("other-etc-%s.1.dar" % day(40))),
            touch(remote / "testhost-notes")]
    penv.run("-P", date=DATE, check=0)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in keep)
    # an unusable destination: exit 1, one mail, the reason in it
    shutil.rmtree(remote)
    proc = penv.run("-U", DATE, date=DATE, check=1)
    assert str(remote) in proc.stderr
    assert len(penv.mails()) == 1


def test_listing_is_only_what_list_prints(penv, tmp_path):
    """Text printed while the config and module files are sourced is not
    part of the listing (the original sourced them once, outside $(list_X))."""
    module(penv, "noisy.sh", r'''
echo "testhost-noise-20200101.1.dar"
mod_noisy() { :; }
list_noisy() { echo "testhost-real-20200101.1.dar"; echo "testhost-real-20261120.1.dar"; }
purge_noisy() { echo "[$1]" >> "$NOISY_LOG"; }
''')
    log = tmp_path / "noisy.log"
    penv.write(UPLOAD_MODULES=["noisy"], NOISY_LOG=str(log), FS_TARGETS=["/real", "/noise"])
    proc = penv.run("-P", date=DATE, check=0)
    assert log.read_text() == "[testhost-real-20200101.1.dar]\n"
    assert "testhost-noise-20200101.1.dar" in proc.stderr


def test_shell_modules_name_without_bash_module_is_a_config_error(site):
    site.write(UPLOAD_MODULES=["local"], SHELL_MODULES=["local"])
    proc = site.run("check", check=1)
    assert "SHELL_MODULES lists 'local', but no *.sh file of MODULE_PATH=%s defines mod_local" \
        % site.module_path in proc.stderr
    assert "Traceback" not in proc.stderr


def test_python_filesystem_backup_feeds_bash_upload_module(site, tmp_path):
    """The Python filesystem module's dar slices reach a Bash upload module
    through NEW_BACKUPS; an old Bash mod_filesystem in the module path is
    not what runs, unless SHELL_MODULES says so."""
    module(site, "stock.sh", STOCK)
    marker = tmp_path / "marker"
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(300_000))
    (src / "deep" / "er" / "note.txt").write_text("restore me\n")
    site.write(BACKUP_MODULES=["filesystem"], UPLOAD_MODULES=["shelf"], FS_TARGETS=[str(src)],
               FS_SLICE_SIZE="100k", MARKER=str(marker))
    plan = site.run("-n", date=DATE, check=0)
    assert "Python backup module filesystem: pypackrat.backup.filesystem" in plan.stdout
    site.run(date=DATE, check=0)
    assert not marker.exists()
    base = "testhost%s-%s.master" % (str(src).replace("/", "-"), DATE)
    made = sorted(os.listdir(site.backup_dir))
    assert len(made) >= 3 and all(n.startswith(base + ".") for n in made)  # 100k slices
    assert sorted(os.listdir(site.shelf)) == made
    # NEW_BACKUPS held every slice, space separated, as full paths
    sent = (site.tmp / "shelf-log.new").read_text().split()
    assert sorted(sent) == [str(site.backup_dir / n) for n in made]
    restored = tmp_path / "restored"
    restored.mkdir()
    subprocess.run(["dar", "-x", str(site.shelf / base), "-R", str(restored), "-Q", "-w", "-O"],
                   check=True, capture_output=True)
    assert (restored / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (restored / "deep" / "er" / "note.txt").read_text() == "restore me\n"
    # SHELL_MODULES: the site's Bash mod_filesystem runs instead
    site.write(SHELL_MODULES=["filesystem"])
    plan = site.run("-n", date=DATE, check=0)
    assert "Bash backup module filesystem: %s" % (site.module_path / "stock.sh") in plan.stdout
    site.run(date=DATE, check=0)
    assert marker.read_text() == "bash filesystem\n"


def test_check_names_a_module_file_bash_cannot_parse(penv):
    """Every Bash module's run sources every *.sh of MODULE_PATH: one that
    bash cannot parse fails them all at night. check said "valid" and no
    more; now a warning names the file and bash's own line."""
    (penv.module_path / "good.sh").write_text("mod_good() { :; }\n")
    (penv.module_path / "zz-broken.sh").write_text("mod_broken() {\n  if then\n}\n")
    penv.write(BACKUP_MODULES=["good"])
    proc = penv.run("check", check=0)
    warnings = [l for l in proc.stderr.splitlines() if "zz-broken.sh" in l]
    assert len(warnings) == 1, proc.stderr
    assert "line 2: syntax error near unexpected token" in warnings[0]
    assert "the Bash modules fail while this file is sourced" in warnings[0]
    os.unlink(penv.module_path / "zz-broken.sh")
    assert "syntax error" not in penv.run("check", check=0).stderr
