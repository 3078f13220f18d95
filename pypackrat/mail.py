"""Mail to ADMIN_EMAIL: through SMTP when SMTP_HOST is set, otherwise
through the local sendmail (or mail) as the original did. Every body is
masked: no secret ever goes into a mail."""
import email.message
import email.utils
import os
import re
import smtplib

from pypackrat import execute, log

ABORT_WARNING = ("WARNING: The backup process was aborted. You may not have a "
                 "stable backup for today.")


# characters no header may hold: controls (a line break would start a new
# header) and undecodable bytes (surrogateescape) of a config value
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")


def _header(value, name):
    value = str(value)
    if _UNSAFE_HEADER.search(value):
        raise ValueError("%s holds a control character or bytes that are not UTF-8; "
                         "it cannot go into a mail header" % name)
    return value


def text(value):
    """``value`` as a str that encodes to UTF-8: bytes that were not UTF-8
    (carried as surrogateescape) become U+FFFD."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    value = re.sub("[\ud800-\udc7f\udd00-\udfff]", "\ufffd", str(value))  # no escaped byte
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def compose(settings, subject, body):
    """The message. No config value ever becomes a header of its own: a
    header value with a line break or undecodable bytes is refused
    (ValueError), the body is always encodable."""
    msg = email.message.EmailMessage()
    msg["Subject"] = _header(subject, "the subject")
    msg["To"] = _header(settings["ADMIN_EMAIL"], "ADMIN_EMAIL")
    sender = settings["MAIL_FROM"] or "packrat@%s" % settings["HOSTNAME"]
    msg["From"] = _header(sender, "MAIL_FROM" if settings["MAIL_FROM"] else "HOSTNAME")
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg.set_content(text(log.mask(body)))
    return msg


def send(settings, subject, body, dry_run=False):
    """Send; return True if handed over. A failure to mail is reported on
    stderr and never hides the failure that caused the mail. In a dry run
    (``dry_run``: the run's flag) the mail is shown, not sent."""
    if not settings["ADMIN_EMAIL"]:
        return False
    try:
        msg = compose(settings, subject, body)
        if dry_run:
            log.info("[dry run] would mail %s: %s" % (settings["ADMIN_EMAIL"], subject))
            return False
        if settings["SMTP_HOST"]:
            _smtp(settings, msg)
        else:
            _local(msg, settings["ADMIN_EMAIL"], subject)
        return True
    except Exception as exc:
        shown = str(settings["ADMIN_EMAIL"])
        log.warn("packrat: could not mail %s: %s"
                 % (ascii(shown) if _UNSAFE_HEADER.search(shown) else shown, log.mask(exc)))
        return False


def _smtp(settings, msg):
    host, port, tls = settings["SMTP_HOST"], settings["SMTP_PORT"], settings["SMTP_TLS"]
    import ssl
    context = ssl.create_default_context(cafile=settings["SMTP_CA"] or None)
    if tls == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=60, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=60)
    with smtp:
        if tls == "starttls":
            smtp.starttls(context=context)
        if settings["SMTP_USER"]:
            smtp.login(settings["SMTP_USER"], settings["SMTP_PASS"])
        smtp.send_message(msg)


def _local(msg, to, subject):
    for sendmail in (execute.which("sendmail"), "/usr/sbin/sendmail", "/usr/lib/sendmail"):
        if sendmail and os.access(sendmail, os.X_OK):
            execute.run([sendmail, "-t", "-oi"], stdin=msg.as_bytes(), quiet=True)
            return
    mail = execute.which("mail")
    if mail:
        if any(word.startswith("-") for word in re.split(r"[\s,]+", to)):
            raise ValueError("ADMIN_EMAIL: an address cannot start with '-'")
        execute.run([mail, "-s", subject, to], stdin=msg.get_content().encode(), quiet=True)
        return
    raise OSError("neither sendmail nor mail is installed; set SMTP_HOST to mail through a server")


def failure(settings, messages, dry_run=False):
    """The original's error mail: subject "Packrat: Error", the messages,
    then its closing warning."""
    body = "\n".join(messages) + "\n\n" + ABORT_WARNING + "\n"
    return send(settings, "Packrat: Error", body, dry_run)


# -- a configuration that stops the nightly run ------------------------------

def fallback_settings(settings):
    """What the mail needs, from a configuration that failed validation:
    each value only where it validated and is safe (SMTP only when all its
    settings are, and never a login without TLS: otherwise the local
    sendmail). None when ADMIN_EMAIL is not usable."""
    import socket
    from pypackrat.config import _HOSTNAME

    def value(name, default=""):
        try:
            found = settings.get(name, default) if settings is not None else default
        except KeyError:  # failed validation
            return None
        return found

    admin = value("ADMIN_EMAIL")
    if (not isinstance(admin, str) or not admin or _UNSAFE_HEADER.search(admin)
            or any(w.startswith("-") for w in re.split(r"[\s,]+", admin))):
        return None
    host = value("HOSTNAME")
    if not isinstance(host, str) or not _HOSTNAME.fullmatch(host):
        host = socket.gethostname()
        host = host if _HOSTNAME.fullmatch(host) else "localhost"
    sender = value("MAIL_FROM")
    if not isinstance(sender, str) or _UNSAFE_HEADER.search(sender):
        sender = ""
    out = {"ADMIN_EMAIL": admin, "HOSTNAME": host, "MAIL_FROM": sender, "SMTP_HOST": "",
           "SMTP_PORT": 25, "SMTP_TLS": "no", "SMTP_CA": "", "SMTP_USER": "", "SMTP_PASS": ""}
    smtp = {name: value(name, out[name]) for name in
            ("SMTP_HOST", "SMTP_PORT", "SMTP_TLS", "SMTP_CA", "SMTP_USER", "SMTP_PASS")}
    if (all(v is not None for v in smtp.values()) and smtp["SMTP_HOST"]
            and not (smtp["SMTP_USER"] and smtp["SMTP_TLS"] == "no")
            and not any(_UNSAFE_HEADER.search(str(v)) for v in smtp.values())):
        out.update(smtp)
    return out


def config_failure(settings, path, problems):
    """Mail the problems of a configuration that stopped a nightly run
    (best effort: see fallback_settings). Returns True if handed over."""
    usable = fallback_settings(settings)
    if usable is None:
        return False
    body = ("The configuration %s is not valid, so tonight's run did not start:\n\n%s\n\n"
            "Check it with: packrat -c %s check" % (path, "\n".join(problems), path))
    return failure(usable, [body])
