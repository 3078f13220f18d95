"""The failure mail survives any config value: bytes that are not UTF-8 in
the body, no config value ever becomes a header; and a configuration error
that stops an unattended nightly run is mailed too."""
import os
import shutil
import subprocess
import sys

import pytest

from pypackrat import mail
from tests.conftest import PACKRAT


def run_raw(penv, extra, *args, stdin=subprocess.DEVNULL, date="20261126"):
    """``penv.run`` with ``extra`` (bytes, any bytes) appended to the config."""
    penv.write()
    with open(penv.config_path, "ab") as fh:
        fh.write(extra)
    env = dict(os.environ, PACKRAT_DATE=date)
    return subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)] + list(args),
                          capture_output=True, env=env, timeout=300, stdin=stdin)


def test_bytes_that_are_not_utf8_reach_the_mail(penv, tmp_path):
    (penv.backup_dir / "testhost-etc-20261126.1.dar").write_bytes(b"x")
    secret = b"pw-\xff\xfe-secret"
    proc = run_raw(penv, b"UPLOAD_MODULES=(local)\nLOCAL_DIR=" + str(tmp_path).encode()
                   + b"/nas-\xe9t\xe9\nMYSQL_PASS='" + secret + b"'\n", "-U", "20261126")
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr and b"could not mail" not in proc.stderr
    assert len(penv.mails()) == 1
    body = penv.smtp.bodies()[0]
    assert "nas-\ufffdt\ufffd" in body
    raw = penv.smtp.messages[0].as_bytes()
    assert secret not in raw and secret not in proc.stderr + proc.stdout


def test_hostname_with_a_line_break_injects_no_header(penv):
    proc = run_raw(penv, b"HOSTNAME=$'web1\\nBcc: evil@example.org'\n")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "HOSTNAME='web1\\nBcc: evil@example.org'" in lines[0]
    # an unattended nightly run: the configuration error is mailed, the
    # kernel's host name in From, no header injected
    assert len(penv.mails()) == 1
    msg = penv.smtp.messages[0]
    assert msg["Bcc"] is None and "evil" not in str(msg["From"]) + str(msg["To"])
    assert "HOSTNAME=" in penv.smtp.bodies()[0]


@pytest.mark.fast
def test_compose_refuses_a_header_with_a_line_break_and_send_says_why(capsys):
    settings = {"ADMIN_EMAIL": "root\nBcc: evil@example.org", "MAIL_FROM": "", "HOSTNAME": "h",
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": 9, "SMTP_TLS": "no", "SMTP_CA": "",
                "SMTP_USER": "", "SMTP_PASS": ""}
    with pytest.raises(ValueError):
        mail.compose(settings, "Packrat: Error", "body")
    assert mail.send(settings, "Packrat: Error", "body") is False
    err = capsys.readouterr().err
    assert "could not mail 'root\\nBcc: evil@example.org'" in err and "ADMIN_EMAIL holds a control" in err
    settings.update(ADMIN_EMAIL="root", HOSTNAME="h\udcff")
    with pytest.raises(ValueError):
        mail.compose(settings, "Packrat: Error", "body")


@pytest.mark.fast
def test_body_with_undecodable_bytes_is_encoded():
    settings = {"ADMIN_EMAIL": "root", "MAIL_FROM": "", "HOSTNAME": "h"}
    msg = mail.compose(settings, "Packrat: Error", "path /srv/\udcff\udcfe and \ud800 lone")
    msg.as_bytes()
    assert msg.get_content() == "path /srv/\ufffd\ufffd and \ufffd lone\n"


def test_configuration_error_of_a_nightly_run_is_mailed(penv):
    penv.write(PURGE_LOCAL_ARCHIVES="abc", MYSQL_PASS="db-secret-9x", FS_TARGETS=["db-secret-9x"],
               BACKUP_MODULES=["filesystem"])
    proc = penv.run()
    assert proc.returncode == 1
    assert len(penv.mails()) == 1
    msg, body = penv.smtp.messages[0], penv.smtp.bodies()[0]
    assert msg["Subject"] == "Packrat: Error" and msg["To"] == "admin@example.org"
    assert "PURGE_LOCAL_ARCHIVES='abc'" in body and "is not an absolute path" in body
    assert "so tonight's run did not start" in body and "packrat -c %s check" % penv.config_path in body
    assert "db-secret-9x" not in body and "db-secret-9x" not in proc.stderr


@pytest.mark.parametrize("args", [["check"], ["-n"], ["list"]])
def test_configuration_error_of_check_or_a_dry_run_is_not_mailed(penv, args):
    penv.write(PURGE_LOCAL_ARCHIVES="abc")
    proc = penv.run(*args)
    assert proc.returncode == 1
    assert penv.mails() == []


@pytest.mark.skipif(not shutil.which("script"), reason="needs util-linux script for a terminal")
def test_configuration_error_at_a_terminal_is_not_mailed(penv):
    penv.write(PURGE_LOCAL_ARCHIVES="abc")
    command = "%s %s -c %s" % (sys.executable, PACKRAT, penv.config_path)
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert "PURGE_LOCAL_ARCHIVES='abc'" in proc.stdout
    assert penv.mails() == []


def test_configuration_error_mail_never_logs_in_without_tls(penv, tmp_path):
    """SMTP_USER with SMTP_TLS=no is itself the error: the mail goes through
    the local sendmail, never with the password in clear text."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kept = tmp_path / "sent"
    fake = bindir / "sendmail"
    fake.write_text('#!/bin/sh\ncat > "%s"\n' % kept)
    fake.chmod(0o755)
    penv.write(SMTP_USER="mailer", SMTP_PASS="smtp-pw-77")
    proc = penv.run(env={"PATH": "%s:%s" % (bindir, os.environ["PATH"])})
    assert proc.returncode == 1 and "SMTP_TLS=no" in proc.stderr
    assert penv.mails() == []  # not through the SMTP server
    import email
    sent = kept.read_text()
    body = email.message_from_string(sent).get_payload(decode=True).decode()
    assert "SMTP_USER is set but SMTP_TLS=no" in body
    assert "smtp-pw-77" not in sent and "smtp-pw-77" not in body


@pytest.mark.fast
def test_fallback_settings_take_only_what_validated():
    from pypackrat import config
    values = {"ADMIN_EMAIL": "ops@example.org", "HOSTNAME": "web1", "MAIL_FROM": "",
              "SMTP_HOST": "mail.example.org", "SMTP_PORT": "x", "SMTP_TLS": "no", "SMTP_CA": "",
              "SMTP_USER": "", "SMTP_PASS": ""}
    s = config.Settings(values, {}, {}, "/etc/packrat.conf", invalid={"SMTP_PORT"})
    usable = mail.fallback_settings(s)
    assert usable["ADMIN_EMAIL"] == "ops@example.org" and usable["SMTP_HOST"] == ""  # local sendmail
    s = config.Settings(dict(values, SMTP_PORT=25), {}, {}, "/etc/packrat.conf")
    assert mail.fallback_settings(s)["SMTP_HOST"] == "mail.example.org"
    s = config.Settings(values, {}, {}, "/etc/packrat.conf", invalid={"ADMIN_EMAIL"})
    assert mail.fallback_settings(s) is None
    assert mail.fallback_settings(None) is None


def test_a_config_that_fails_in_bash_is_mailed_from_what_it_defined(penv):
    """A trailing failing command stops the run before validation: the mail
    still goes to the ADMIN_EMAIL and through the SMTP server the file set."""
    penv.extra = "MYSQL_PASS=bash-secret-31\nfalse\n"
    proc = penv.run()
    assert proc.returncode == 1 and "ended with status 1" in proc.stderr
    assert len(penv.mails()) == 1
    body = penv.smtp.bodies()[0]
    assert "ended with status 1" in body and "bash-secret-31" not in body
