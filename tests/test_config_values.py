"""Values mean one thing, every problem is reported in one pass, `check`
and the run agree, typos are caught, and each message names the file to
edit."""
import os

import pytest

from pypackrat import config


def errors(proc):
    return [l for l in proc.stderr.splitlines() if l and not l.startswith("Warning: ")]


def warnings(proc):
    return [l for l in proc.stderr.splitlines() if l.startswith("Warning: ")]


def test_one_type_error_hides_no_module_check(penv):
    penv.write(PURGE_LOCAL_ARCHIVES="abc", BACKUP_MODULES=["filesystem", "nosuchmod"],
               FS_TARGETS=["etc"], FS_SLICE_SIZE="12Q", FS_MASTER_DAY="Someday",
               FS_METHOD="tar", UPLOAD_RETRIES="many")
    proc = penv.run("check", env={"LC_ALL": "C"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    text = proc.stderr
    for expected in ("PURGE_LOCAL_ARCHIVES='abc'", "UPLOAD_RETRIES='many'",
                     "no backup module named 'nosuchmod'", "'etc' is not an absolute path",
                     "FS_SLICE_SIZE='12Q'", "FS_MASTER_DAY='Someday'", "FS_METHOD=tar"):
        assert expected in text, expected
    assert all(str(penv.config_path) in line for line in errors(proc))


def test_checks_whose_inputs_are_invalid_are_skipped(penv):
    """FS_MASTER_FREQ misspelt: its own error, and no second one about FS_MASTER_DAY."""
    penv.write(FS_MASTER_FREQ="montly", FS_MASTER_DAY="15")
    proc = penv.run("check", env={"LC_ALL": "C"})
    assert proc.returncode == 1
    assert errors(proc) == ["%s: FS_MASTER_FREQ='montly': must be one of weekly, monthly" % penv.config_path]


def test_numbers_are_ascii_and_finite(penv):
    before = dict(penv.settings)
    for name, value in (("UPLOAD_RETRY_WAIT", "nan"), ("UPLOAD_RETRY_WAIT", "inf"),
                        ("UPLOAD_RETRY_WAIT", "-inf"), ("UPLOAD_RETRY_WAIT", "1e2"),
                        ("SSH_PORT", "\u096a"), ("SSH_PORT", "２２"), ("UPLOAD_RETRIES", "1_0"),
                        ("PURGE_LOCAL_ARCHIVES", " 7"), ("PURGE_LOCAL_ARCHIVES", "0x10")):
        penv.write(**{name: value})
        proc = penv.run("check")
        assert proc.returncode == 1, (name, value, proc.stdout)
        assert errors(proc) == ["%s: %s=%r: must be %s" % (
            penv.config_path, name, value,
            "a number (digits 0-9, a decimal point) from 0 to 600" if name == "UPLOAD_RETRY_WAIT"
            else "a whole number from 1 to 65535 (digits 0-9)" if name == "SSH_PORT"
            else "a whole number from 0 to 100 (digits 0-9)" if name == "UPLOAD_RETRIES"
            else "a whole number >= 0 (digits 0-9)")], (name, value)
        penv.settings = dict(before)
    penv.write(UPLOAD_RETRY_WAIT="0.5", SSH_PORT="2222", UPLOAD_RETRIES="3")
    proc = penv.run("check", check=0)
    assert "UPLOAD_RETRY_WAIT=0.5 " in proc.stdout and "SSH_PORT=2222 " in proc.stdout


def test_an_array_for_a_scalar_setting(penv):
    penv.write(SSH_PORT=["22", "2222"], ENCRYPTION_KEY=["k-one-secret", "k-two-secret"])
    proc = penv.run("check")
    assert proc.returncode == 1
    assert ("%s: SSH_PORT is an array of 2 values, but it takes one value (Bash's $SSH_PORT would be "
            "only the first, '22')" % penv.config_path) in errors(proc)
    assert any(l.startswith("%s: ENCRYPTION_KEY is an array of 2 values" % penv.config_path)
               for l in errors(proc))
    assert "k-one-secret" not in proc.stderr + proc.stdout
    # one element is what Bash's $VAR gives: accepted
    penv.write(SSH_PORT=["2222"], ENCRYPTION_KEY=["k-one-secret"])
    proc = penv.run("check", check=0)
    assert "SSH_PORT=2222 " in proc.stdout and "k-one-secret" not in proc.stdout


def test_a_list_for_a_scalar_in_modules_d(penv):
    (penv.modules_d / "ssh.conf").write_text("[ssh]\nSSH_PORT = 22, 23\n")
    proc = penv.run("check")
    assert proc.returncode == 1
    assert errors(proc) == ["%s: SSH_PORT is an array of 2 values, but it takes one value (Bash's "
                            "$SSH_PORT would be only the first, '22')" % (penv.modules_d / "ssh.conf")]


def test_allowed_values_are_listed_once(penv):
    penv.write(DB_CIPHER="rot13", COMPRESSOR="gzip", SMTP_TLS="yes")
    proc = penv.run("check")
    lines = errors(proc)
    assert "%s: DB_CIPHER='rot13': must be one of aes-256-cbc, blowfish" % penv.config_path in lines
    assert "%s: COMPRESSOR='gzip': must be one of bzip2, lbzip2, pbzip2, zstd, a level may follow (bzip2:9, zstd:19)" % penv.config_path in lines
    assert "%s: SMTP_TLS='yes': must be one of no, starttls, ssl" % penv.config_path in lines


@pytest.mark.fast
def test_spec_is_read_as_validate_parses_it():
    types = config._spec_types()
    assert types["DB_CIPHER"].args == ["aes-256-cbc", "blowfish"]
    assert types["SSH_PORT"].kwargs == {"min": "1", "max": "65535"}
    assert types["SSH_PORT"].has_default and not types["BACKUP_DIR"].has_default
    assert types["MYSQL_PORT"].has_default  # default=None: optional


def test_local_dir_missing_or_a_file_is_listed_by_check_and_fails_the_upload(penv, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for local_dir, what in ((tmp_path / "nothere", "does not exist"), (afile, "is not a directory")):
        penv.write(UPLOAD_MODULES=["local"], LOCAL_DIR=str(local_dir))
        proc = penv.run("check", check=0)
        assert warnings(proc) == ["Warning: %s: LOCAL_DIR=%s %s (is the share mounted?): the local "
                                  "upload will fail" % (penv.config_path, local_dir, what)]
        (penv.backup_dir / "testhost-etc-20261126.1.dar").write_bytes(b"x")
        proc = penv.run("-U", "20261126", date="20261126")
        assert proc.returncode == 1 and "not a directory" in proc.stderr
    penv.write(LOCAL_DIR="relative/dir")
    proc = penv.run("check")
    assert errors(proc) == ["%s: LOCAL_DIR='relative/dir': must be an absolute path" % penv.config_path]


def test_s3_region_and_endpoint_must_be_well_formed(penv):
    penv.write(UPLOAD_MODULES=["s3"], S3_BUCKET="bucket", S3_REGION="//",
               S3_ENDPOINT_URL="http://exa mple:9000")
    proc = penv.run("check")
    assert proc.returncode == 1
    assert errors(proc) == [
        "%s: S3_REGION=//: not a region name (letters, digits and '-', as us-east-1)" % penv.config_path,
        "%s: S3_ENDPOINT_URL=http://exa mple:9000: holds spaces, control characters or bytes that are "
        "not UTF-8" % penv.config_path]
    for url in ("//", "ftp://host", "http://host:0", "http://host:70000", "http://-host", "http://"):
        penv.write(S3_REGION="eu-central-1", S3_ENDPOINT_URL=url)
        proc = penv.run("check")
        assert proc.returncode == 1 and len(errors(proc)) == 1, url
        assert errors(proc)[0].startswith("%s: S3_ENDPOINT_URL=%s: " % (penv.config_path, url))
    penv.write(S3_ENDPOINT_URL="http://127.0.0.1:9000")
    penv.run("check", check=0)
    penv.write(S3_ENDPOINT_URL="https://[::1]:9000/base")
    penv.run("check", check=0)


def test_hosts_never_become_options(penv):
    penv.write(UPLOAD_MODULES=["ssh", "ftp"], SSH_HOST="-oProxyCommand=id", SSH_DIR="/x",
               SSH_USER="-l root", FTP_HOST="ftp host", FTP_USER="u", FTP_DIR="a\nb")
    proc = penv.run("check")
    lines = errors(proc)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert any("SSH_HOST='-oProxyCommand=id': must be a host name" in l for l in lines)
    assert any("SSH_USER='-l root': must be a user name" in l for l in lines)
    assert any("FTP_HOST='ftp host': must be a host name" in l for l in lines)
    assert any("FTP_DIR='a\\nb': holds a control character" in l for l in lines)
    assert len(lines) == 4


def test_modules_d_with_only_comments_is_accepted(penv):
    (penv.modules_d / "notes.conf").write_text("; only comments here\n;   and another\n# and a hash\n")
    penv.run("check", check=0)


def test_typos_are_warnings_with_a_suggestion(penv):
    penv.extra = ("FS_TARGET=/srv\nHOSTNAM=web1\nhostname=web2\nMYMODULE_WIDGETS=(a b)\nlowercase_thing=1\n"
                  "S3_ENDPOINT=http://minio:9000\nMYSQL=1\n")  # MYSQL: the start of several settings
    proc = penv.run("check", check=0)
    path = penv.config_path
    assert sorted(warnings(proc)) == sorted([
        "Warning: %s: S3_ENDPOINT is not a packrat setting: did you mean S3_ENDPOINT_URL?" % path,
        "Warning: %s: FS_TARGET is not a packrat setting: did you mean FS_TARGETS?" % path,
        "Warning: %s: HOSTNAM is not a packrat setting: did you mean HOSTNAME?" % path,
        "Warning: %s: hostname is not a packrat setting: did you mean HOSTNAME?" % path])
    (penv.modules_d / "s3.conf").write_text("[s3]\nS3_BUKET = b\n")
    proc = penv.run("check", check=0)
    assert ("Warning: %s: S3_BUKET is not a packrat setting: did you mean S3_BUCKET?"
            % (penv.modules_d / "s3.conf")) in warnings(proc)


def test_a_module_listed_twice_runs_once_with_a_warning(penv, tmp_path):
    """Two runs of one upload module raced on the same temporary names."""
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.write(UPLOAD_MODULES=["local", "local"], LOCAL_DIR=str(nas))
    proc = penv.run("check", check=0)
    assert ("Warning: %s: UPLOAD_MODULES lists local more than once: each runs once" % penv.config_path
            in warnings(proc))
    assert "UPLOAD_MODULES=('local')" in proc.stdout


def test_messages_name_the_file_to_edit_not_default(penv):
    """A setting left at its built-in default is blamed on the file that
    enabled the module."""
    penv.write(BACKUP_MODULES=["filesystem"], UPLOAD_MODULES=["ssh", "ftp", "s3", "local"])
    proc = penv.run("check")
    lines = errors(proc)
    assert not any(l.startswith("default") for l in lines), lines
    path = penv.config_path
    for expected in ("FS_TARGETS is empty, but the filesystem backup module is enabled",
                     "SSH_HOST is empty", "SSH_DIR is empty", "FTP_HOST is empty", "FTP_USER is empty",
                     "S3_BUCKET is empty", "LOCAL_DIR is empty"):
        assert "%s: %s" % (path, expected) in proc.stderr, expected
    # the modules enabled from a modules.d file: that file is named
    del penv.settings["UPLOAD_MODULES"]
    penv.write()
    conf = penv.modules_d / "uploads.conf"
    conf.write_text("UPLOAD_MODULES = ssh,\n[ssh]\nSSH_DIR = /backup\n")
    proc = penv.run("check")
    assert "%s: SSH_HOST is empty, but the ssh upload module is enabled" % conf in errors(proc)


@pytest.mark.fast
def test_settings_where():
    s = config.Settings({}, {"A": "/etc/packrat.conf", "B": "default", "BACKUP_MODULES": "/m.d/x.conf",
                             "UPLOAD_MODULES": "command line"}, {}, "/etc/packrat.conf")
    assert s.where("A") == "/etc/packrat.conf"
    assert s.where("B") == "the built-in default"
    assert s.where("C") == "the built-in default"
    assert s.where("B", "backup") == "/m.d/x.conf"
    assert s.where("B", "upload") == "command line"
    from pypackrat import dumps
    assert dumps.where(s, "A") == "/etc/packrat.conf"


def test_smtp_login_needs_tls(penv):
    penv.write(SMTP_USER="mailer", SMTP_PASS="pw-in-clear-text")
    proc = penv.run("check")
    assert proc.returncode == 1
    assert errors(proc) == ["%s: SMTP_USER is set but SMTP_TLS=no: the SMTP password would go over the "
                            "network in clear text; set SMTP_TLS=starttls (port 587) or SMTP_TLS=ssl "
                            "(port 465)" % penv.config_path]
    assert "pw-in-clear-text" not in proc.stdout + proc.stderr
    penv.write(SMTP_TLS="starttls")
    penv.run("check", check=0)


def test_hostname_with_a_line_break_is_a_config_error(penv):
    penv.write(HOSTNAME="web1\nBcc: evil@example.org")
    proc = penv.run("check")
    assert proc.returncode == 1
    assert errors(proc) == ["%s: HOSTNAME='web1\\nBcc: evil@example.org': must be a host name (letters, "
                            "digits, '.', '-', '_'; no '/', spaces or control characters): it names every "
                            "archive and the failure mail" % penv.config_path]
    for bad in ("../../etc", "-x", "a b", "web/1"):
        penv.write(HOSTNAME=bad)
        assert penv.run("check").returncode == 1, bad


def test_admin_email_cannot_carry_headers_or_options(penv):
    penv.write(ADMIN_EMAIL="root\nBcc: evil@example.org")
    proc = penv.run("check")
    assert proc.returncode == 1 and "ADMIN_EMAIL=" in proc.stderr and len(errors(proc)) == 1
    penv.write(ADMIN_EMAIL="ops@example.org, -fevil")
    proc = penv.run("check")
    assert proc.returncode == 1 and "an address cannot start with '-'" in proc.stderr
    penv.write(ADMIN_EMAIL="ops@example.org, root")
    penv.run("check", check=0)


def test_backup_dir_must_be_absolute(penv):
    penv.write(BACKUP_DIR="backups")
    proc = penv.run("check")
    assert errors(proc) == ["%s: BACKUP_DIR='backups': must be an absolute path" % penv.config_path]


def test_check_and_dry_run_accept_the_shipped_config_shape(penv):
    """The stock packrat.conf, pointed at the test's directories, is valid."""
    from tests.conftest import ROOT
    text = open(os.path.join(ROOT, "packrat.conf")).read()
    for name in ("BACKUP_DIR", "MODULE_PATH", "MODULES_D", "LOCK_FILE"):
        text += '\n%s=%s\n' % (name, "'%s'" % penv.settings[name])
    text += "HOSTNAME=testhost\nFS_TARGETS=(%s)\n" % penv.tmp
    penv.config_path.write_text(text)
    from tests.conftest import PACKRAT
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path), "check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert warnings(proc) == []


def test_a_key_with_bytes_that_are_not_utf8_reaches_dar_as_those_bytes(penv, tmp_path):
    """ENCRYPTION_KEY=$'k\\xc3y' (Latin-1, say): dar gets exactly those bytes,
    as the Bash version gave them."""
    import subprocess
    import sys
    from tests.conftest import PACKRAT
    target = tmp_path / "data"
    target.mkdir()
    (target / "f").write_text("content\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(target)], FS_INCREMENTAL="no")
    with open(penv.config_path, "ab") as fh:
        fh.write(b"ENCRYPTION_KEY=$'k\\xc3y-\\xff'\n")
    env = dict(os.environ, PACKRAT_DATE="20261126")
    proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)], capture_output=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    slices = [n for n in os.listdir(penv.backup_dir) if n.endswith(".1.dar")]
    assert len(slices) == 1
    base = str(penv.backup_dir / slices[0][:-len(".1.dar")])
    ok = subprocess.run([b"dar", b"-t", base.encode(), b"-K", b"aes256:k\xc3y-\xff", b"-Q"],
                        capture_output=True)
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run(["dar", "-t", base, "-K", "aes256:k\u00c3y-\u00ff", "-Q"], capture_output=True)
    assert wrong.returncode != 0


def test_check_warns_of_what_the_run_would_skip_or_fail(penv, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    penv.write(BACKUP_DIR=str(blocker / "sub"), BACKUP_MODULES=["filesystem"],
               FS_TARGETS=[str(tmp_path), str(tmp_path / "gone")])
    proc = penv.run("check", check=0)
    assert sorted(warnings(proc)) == sorted([
        "Warning: %s: BACKUP_DIR=%s: %s is not a directory: no backup can be written"
        % (penv.config_path, blocker / "sub", blocker),
        "Warning: %s: FS_TARGETS: %s is not a directory here: it is skipped"
        % (penv.config_path, tmp_path / "gone")])
    proc = penv.run()
    assert proc.returncode == 1  # the run fails as check said


def test_host_settings_take_names_and_addresses(penv):
    penv.write(UPLOAD_MODULES=["ssh"], SSH_DIR="/x", SSH_HOST="::1", SMTP_HOST="mail.example.org")
    penv.run("check", check=0)
    for bad in ("[::1]", "host name", "host\tname", "h\u00f6st", "a;b", "-x"):
        penv.write(SSH_HOST=bad)
        proc = penv.run("check")
        assert errors(proc) == ["%s: SSH_HOST=%r: must be a host name or an IP address (letters, digits, "
                                "'.', '-', ':')" % (penv.config_path, bad)], bad
