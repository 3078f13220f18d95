"""Mail through an SMTP server with STARTTLS and a login, the certificate
checked; the password never in output."""
import subprocess

import pytest

from tests.servers.smtp import SmtpServer


@pytest.fixture(scope="module")
def tls_smtp(tmp_path_factory):
    d = tmp_path_factory.mktemp("smtp-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = SmtpServer(tls_cert=str(cert), tls_key=str(key), users={"packrat": "mail-pw-123"}).start()
    yield server, cert
    server.stop()


def failing_run(penv, tmp_path, **settings):
    penv.write(LOCAL_DIR=str(tmp_path / "missing"), UPLOAD_MODULES=["local"], **settings)
    (penv.backup_dir / "testhost-etc-20261126.1.dar").write_bytes(b"x")
    return penv.run("-U", "20261126", date="20261126")


def test_starttls_with_login(penv, tmp_path, tls_smtp):
    server, cert = tls_smtp
    server.clear()
    proc = failing_run(penv, tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TLS="starttls",
                       SMTP_CA=str(cert), SMTP_USER="packrat", SMTP_PASS="mail-pw-123")
    assert proc.returncode == 1
    assert len(server.messages) == 1
    assert server.messages[0]["Subject"] == "Packrat: Error"
    assert "mail-pw-123" not in proc.stdout + proc.stderr + server.bodies()[0]


def test_unverifiable_certificate_is_refused_and_reported(penv, tmp_path, tls_smtp):
    server, cert = tls_smtp
    server.clear()
    proc = failing_run(penv, tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TLS="starttls",
                       SMTP_USER="packrat", SMTP_PASS="mail-pw-123")
    assert proc.returncode == 1
    assert server.messages == []
    assert "could not mail admin@example.org" in proc.stderr and "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    assert ("through 127.0.0.1:%d (SMTP_TLS=starttls, set in %s)" % (server.port, penv.config_path)
            in proc.stderr), proc.stderr  # which server, and the file to edit
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("admin", ["ops@example.org dba@example.org", "ops@example.org, dba@example.org",
                                   "ops@example.org,dba@example.org"])
def test_every_address_of_admin_email_gets_the_mail(penv, tmp_path, admin):
    """The original gave its unquoted $ADMIN_EMAIL to mail(1): addresses
    separated by spaces each got the mail, as do those separated by commas."""
    proc = failing_run(penv, tmp_path, ADMIN_EMAIL=admin)
    assert proc.returncode == 1
    assert penv.smtp.envelopes == [["ops@example.org", "dba@example.org"]]
    assert penv.smtp.messages[0]["To"] == "ops@example.org, dba@example.org"
