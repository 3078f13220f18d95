"""Mail to ADMIN_EMAIL: through SMTP when SMTP_HOST is set, otherwise
through the local sendmail (or mail) as the original did. Every body is
masked: no secret ever goes into a mail."""
import email.message
import email.utils
import os
import smtplib

from pypackrat import execute, log

ABORT_WARNING = ("WARNING: The backup process was aborted. You may not have a "
                 "stable backup for today.")


def compose(settings, subject, body):
    msg = email.message.EmailMessage()
    msg["Subject"] = subject
    msg["To"] = settings["ADMIN_EMAIL"]
    msg["From"] = settings["MAIL_FROM"] or "packrat@%s" % settings["HOSTNAME"]
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg.set_content(log.mask(body))
    return msg


def send(settings, subject, body):
    """Send; return True if handed over. A failure to mail is reported on
    stderr and never hides the failure that caused the mail."""
    if not settings["ADMIN_EMAIL"]:
        return False
    msg = compose(settings, subject, body)
    if execute.dry_run():
        log.info("[dry run] would mail %s: %s" % (settings["ADMIN_EMAIL"], subject))
        return False
    try:
        if settings["SMTP_HOST"]:
            _smtp(settings, msg)
        else:
            _local(msg, settings["ADMIN_EMAIL"], subject)
        return True
    except Exception as exc:
        log.warn("packrat: could not mail %s: %s" % (settings["ADMIN_EMAIL"], log.mask(exc)))
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
        execute.run([mail, "-s", subject, to], stdin=msg.get_content().encode(), quiet=True)
        return
    raise OSError("neither sendmail nor mail is installed; set SMTP_HOST to mail through a server")


def failure(settings, messages):
    """The original's error mail: subject "Packrat: Error", the messages,
    then its closing warning."""
    body = "\n".join(messages) + "\n\n" + ABORT_WARNING + "\n"
    return send(settings, "Packrat: Error", body)
