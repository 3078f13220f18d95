"""Any config gets a clear answer in bounded time: the evaluation cannot be
confused by what the config writes, never hangs, never leaves a process
behind, says when the file stopped early or has foreign line endings, reads
10,000 variables at once, carries bytes that are not UTF-8, and never lets a
broken config become a silently weaker backup (nor print its secret)."""
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import PACKRAT

TIMEOUT = "2"  # PACKRAT_CONFIG_TIMEOUT for the hang tests


def check(penv, extra, env=None, *args):
    penv.extra = extra
    full = {"PACKRAT_CONFIG_TIMEOUT": TIMEOUT}
    full.update(env or {})
    proc = penv.run(*(args or ("check",)), env=full, timeout=120)
    assert "Traceback" not in proc.stderr
    return proc


def config_line(penv):
    """The number of the first line of penv.extra in the written config."""
    return len(penv.settings) + 1


def alive(marker):
    """PIDs of live processes whose command line holds ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmdline = fh.read()
            with open("/proc/%s/stat" % pid) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(pid))
    return found


def gone(marker, within=5.0):
    deadline = time.monotonic() + within
    while alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(marker)


# -- the result channel cannot be confused ---------------------------------------

@pytest.mark.parametrize("extra", [
    "echo hi >&3\n",
    "exec 3>&-\necho x >&3\n",
    "exec 3>/dev/null 4>&1\necho x >&3\nprintf '\\0\\xff\\xfe' >&4\n",
], ids=["write-fd3", "closed-fd3", "own-fd3"])
def test_what_the_config_writes_on_fd_3_is_only_its_own(penv, extra):
    proc = check(penv, extra)
    if "Bad file descriptor" in proc.stderr:
        assert proc.returncode == 1
        assert "%s: line %d: 3: Bad file descriptor" % (penv.config_path, config_line(penv) + extra.count("\n") - 1) \
            in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "BACKUP_DIR='%s'" % penv.backup_dir in proc.stdout


def test_records_forged_on_any_descriptor_change_nothing(penv, tmp_path):
    forged = "printf 'S\\0BACKUP_DIR\\0/injected\\0E\\0000\\0\\0' >&%d\n"
    extra = "exec 3>%s/chan\n" % tmp_path + "".join(forged % fd for fd in (1, 3)) \
        + "exec 2>/dev/null\nfor fd in 3 4 5 6 7 8 9 10 11 12 63 255; do echo junk >&$fd; done\ntrue\n"
    proc = check(penv, extra)
    assert proc.returncode == 0, proc.stderr
    assert "BACKUP_DIR='%s'" % penv.backup_dir in proc.stdout and "/injected'" not in proc.stdout


# -- modules.d files that are not UTF-8 --------------------------------------------

@pytest.mark.parametrize("content,message", [
    ("[local]\nLOCAL_DIR = /srv\n".encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
    ("[local]\nLOCAL_DIR = /srv\n".encode("utf-16-le"), "the file holds NUL bytes (UTF-16 text?)"),
    (b"[local]\n# caf\xe9\nLOCAL_DIR = /srv\n", "line 2: byte 0xe9 is not UTF-8"),
], ids=["utf-16", "utf-16-no-bom", "latin-1"])
def test_modules_d_file_that_is_not_utf8_is_named(penv, content, message):
    conf = penv.modules_d / "local.conf"
    conf.write_bytes(content)
    proc = check(penv, "")
    assert proc.returncode == 1
    assert "%s: %s" % (conf, message) in proc.stderr


def test_modules_d_file_of_semicolon_comments_is_accepted(penv):
    (penv.modules_d / "notes.conf").write_text("; only comments here\n  ; indented\n")
    (penv.modules_d / "local.conf").write_text("; the local upload\n[local]\n; where\nLOCAL_DIR = %s\n"
                                               % penv.tmp)
    proc = check(penv, "")
    assert proc.returncode == 0, proc.stderr
    assert "LOCAL_DIR='%s'    # %s" % (penv.tmp, penv.modules_d / "local.conf") in proc.stdout


# -- bounded in time, nothing left behind -------------------------------------------

@pytest.mark.parametrize("extra", [
    "sleep 1000.4701\n",
    "exec sleep 1000.4702\n",
    "while :; do :; done  # 1000.4703\n",
    "sleep 1000.4704 &\nsuspend -f\n",
], ids=["sleep", "exec-sleep", "loop", "suspend"])
def test_a_config_that_hangs_is_stopped_within_the_bound(penv, extra):
    marker = extra.split("1000.")[1][:4]
    start = time.monotonic()
    proc = check(penv, extra)
    took = time.monotonic() - start
    assert proc.returncode == 1
    assert "%s: evaluating the file took longer than %s seconds and was stopped" % (penv.config_path, TIMEOUT) \
        in proc.stderr
    assert took < 30
    assert gone("1000." + marker)


def test_background_job_of_the_config_does_not_outlive_packrat(penv):
    proc = check(penv, "sleep 60.4711 &\n")
    assert proc.returncode == 0, proc.stderr
    assert gone("60.4711")


def test_sigterm_during_evaluation_ends_the_run_at_once(penv):
    penv.extra = "sleep 100.4712\n"
    penv.write()
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path), "check"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not alive("100.4712") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive("100.4712")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert gone("100.4712")


# -- a config that stops early says so -----------------------------------------------

@pytest.mark.parametrize("extra,status,offset", [
    ("exit 0\n", 0, 0), ("exit 3\n", 3, 0), ("set -e\nfalse\n", 1, 1), ("f() { exit 4; }\nf\n", 4, 0),
])
def test_early_exit_names_the_status_and_line(penv, extra, status, offset):
    proc = check(penv, extra + "LATE=1\n")
    line = config_line(penv) + offset  # the line of the exit (in f's body for f)
    assert proc.returncode == 1
    assert ("%s: line %d: the file exited before its end, with status %d" % (penv.config_path, line, status)
            in proc.stderr), proc.stderr
    assert "is not defined" not in proc.stderr


@pytest.mark.parametrize("extra,offset", [
    ("return\n", 0), ("if true; then\n  return 0\nfi\n", 1),
])
def test_a_return_outside_functions_is_named(penv, extra, offset):
    """A top-level return ends bash's reading of the file without a word."""
    proc = check(penv, extra + "LATE=1\n")
    assert proc.returncode == 1
    assert ("%s: line %d: a return outside any function stopped the file there"
            % (penv.config_path, config_line(penv) + offset) in proc.stderr), proc.stderr


def test_a_return_in_a_function_or_a_name_like_return_is_fine(penv):
    proc = check(penv, "f() { return 0; }\nf\nreturn_code=0\nreturned=(a b)\n")
    assert proc.returncode == 0, proc.stderr


def test_exec_in_the_config_is_named(penv):
    proc = check(penv, "exec /bin/true\n")
    assert proc.returncode == 1
    assert "%s: the evaluation ended before the file was read to its end (status 0)" % penv.config_path \
        in proc.stderr
    assert "is not defined" not in proc.stderr


@pytest.mark.parametrize("extra", [
    "printf() { :; }\n",
    "declare() { :; }\n",
    "printf() { :; }; declare() { :; }; command() { :; }; compgen() { :; }; mapfile() { :; }\n"
    "unset() { :; }; set() { :; }; trap() { :; }; exec() { :; }; enable() { :; }\n",
    "shopt -s expand_aliases\nalias printf=false declare=false\n",
    "enable -n printf declare\n",
    "set -euo pipefail -o noclobber\nshopt -s nocasematch failglob\nIFS=x\n",
], ids=["printf", "declare", "every-builtin", "aliases", "disabled-builtins", "options"])
def test_overrides_of_builtins_do_not_change_what_is_read(penv, extra):
    proc = check(penv, extra)
    assert proc.returncode == 0, proc.stderr
    assert "BACKUP_DIR='%s'" % penv.backup_dir in proc.stdout
    assert "PURGE_LOCAL_ARCHIVES=10" in proc.stdout


def test_trailing_false_is_a_config_error(penv):
    proc = check(penv, "false\n")
    assert proc.returncode == 1
    assert "%s: line %d: the file ended with status 1 (its last command failed)" \
        % (penv.config_path, config_line(penv)) in proc.stderr


def test_exit_trap_with_a_status_is_a_config_error(penv):
    proc = check(penv, "trap 'exit 7' EXIT\n")
    assert proc.returncode == 1
    assert "%s: the evaluation exited with status 7 after the file was read" % penv.config_path in proc.stderr


@pytest.mark.parametrize("ending,message", [
    (b"\r\n", "the file has Windows (CRLF) line endings"),
    (b"\r", "the file has old Mac (CR-only) line endings"),
], ids=["crlf", "cr"])
def test_line_endings_are_named_as_the_cause(penv, ending, message):
    penv.write(COMPRESSOR="bzip2")
    data = penv.config_path.read_bytes().replace(b"\n", ending)
    penv.config_path.write_bytes(data)
    proc = subprocess.run([PACKRAT, "-c", str(penv.config_path), "check"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "%s: %s" % (penv.config_path, message) + proc.stderr.split(message, 1)[1].splitlines()[0]]
    assert "bzip2\r" not in proc.stderr and "is not defined" not in proc.stderr


# -- scale ----------------------------------------------------------------------------------

def test_ten_thousand_variables_in_one_pass(penv):
    from pypackrat import config
    penv.extra = "".join("VAR_%d='value %d'\n" % (i, i) for i in range(10000)) + "ARR=(x 'y z')\n"
    penv.write()
    start = time.monotonic()
    values, warnings = config.read_shell(str(penv.config_path))
    took = time.monotonic() - start
    assert values["VAR_0"] == "value 0" and values["VAR_9999"] == "value 9999"
    assert values["ARR"] == ["x", "y z"]
    assert len([n for n in values if n.startswith("VAR_")]) == 10000
    assert took < 5, took  # one fork per variable took 11-16 s


# -- bytes that are not UTF-8 -------------------------------------------------------------

def test_values_that_are_not_utf8_are_carried_and_masked(penv, tmp_path):
    os.mkdir(os.fsencode(str(tmp_path)) + b"/d\xe9j\xe0")  # a name in Latin-1, not UTF-8
    penv.extra = "LOCAL_DIR=$'%s/d\\xe9j\\xe0'\nMYSQL_PASS=$'pw\\xfe-very-secret'\n" % tmp_path
    penv.write()
    for args in (["check"], ["-n"]):
        proc = subprocess.run([PACKRAT, "-c", str(penv.config_path)] + args, capture_output=True,
                              env=dict(os.environ, PACKRAT_DATE="20261126"))
        out = proc.stdout + proc.stderr
        assert b"Traceback" not in out, out
        assert b"very-secret" not in out
        assert proc.returncode == 0, out
    assert b"MYSQL_PASS=****" in subprocess.run([PACKRAT, "-c", str(penv.config_path), "check"],
                                                capture_output=True).stdout


# -- a broken config is never a weaker backup, nor a leak ------------------------------

KEY_WORDS = ("correct", "horse", "battery")


def test_unquoted_key_stops_the_run_with_no_archive_and_no_key_shown(penv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("data\n")
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)])
    penv.extra = "ENCRYPTION_KEY=correct horse battery\n"
    proc = penv.run(date="20261126", env={"PACKRAT_CONFIG_TIMEOUT": "10"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "the line that sets ENCRYPTION_KEY" in proc.stderr
    assert os.listdir(penv.backup_dir) == []
    shown = proc.stdout + proc.stderr + "".join(penv.smtp.bodies())
    for word in KEY_WORDS:
        assert word not in shown, shown


def test_secret_printed_by_the_config_is_masked(penv):
    proc = check(penv, "MYSQL_PASS='hunter2-very-secret'\nAPI_TOKEN=tok-98765\n"
                       "echo \"pass is $MYSQL_PASS, token $API_TOKEN\" >&2\necho \"$API_TOKEN\"\n")
    assert proc.returncode == 1
    assert "%s: pass is ****, token ****" % penv.config_path in proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr and "98765" not in proc.stdout + proc.stderr


def test_config_that_prints_on_stdout_is_a_warning(penv):
    proc = check(penv, "echo 'reading the config'\n")
    assert proc.returncode == 0, proc.stderr
    assert "Warning: %s: printed while it was read: reading the config" % penv.config_path in proc.stderr


def test_xtrace_is_one_line_and_shows_nothing_of_the_trace(penv):
    proc = check(penv, "set -x\nMYSQL_PASS='xtrace-s3cret'\nOTHER=plain-value\n")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "%s: the file turns on set -x (xtrace), whose trace on stderr makes it a configuration "
        "error; remove it" % penv.config_path]
