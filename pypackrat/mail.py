"""Mail to ADMIN_EMAIL: through SMTP when SMTP_HOST is set, otherwise
through the local sendmail (or mail) as the original did. Every body is
masked: no secret ever goes into a mail."""
import email.message
import email.utils
import contextlib
import os
import re
import smtplib
import stat

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


def fqdn(hostname):
    """The machine's fully qualified name (socket.getfqdn()) for the sender
    and the Message-ID; ``hostname`` (HOSTNAME) when it has none better."""
    import socket
    from pypackrat.config import _HOSTNAME
    try:
        name = socket.getfqdn()
    except OSError:
        name = ""
    if _HOSTNAME.fullmatch(name or "") and "." in name and not name.startswith("localhost"):
        return name
    return str(hostname)


def compose(settings, subject, body):
    """The message. No config value ever becomes a header of its own: a
    header value with a line break or undecodable bytes is refused
    (ValueError), the body is always encodable."""
    msg = email.message.EmailMessage()
    msg["Subject"] = _header(subject, "the subject")
    msg["To"] = ", ".join(recipients(_header(settings["ADMIN_EMAIL"], "ADMIN_EMAIL")))
    domain = fqdn(settings["HOSTNAME"])
    sender = settings["MAIL_FROM"] or "packrat@%s" % domain
    msg["From"] = _header(sender, "MAIL_FROM" if settings["MAIL_FROM"] else "HOSTNAME")
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid("packrat", domain=domain)
    msg.set_content(text(log.mask(body)))
    return msg


def recipients(value):
    """ADMIN_EMAIL's addresses. Plain addresses may be separated by commas
    or, as the original's unquoted $ADMIN_EMAIL gave them to mail(1), by
    white space; a value with display names ("Ops <ops@x>") is a header's
    list, separated by commas."""
    if re.search(r'[<>"]', value):
        return [value]
    return [word for word in re.split(r"[ \t,]+", value) if word]


def send(settings, subject, body, dry_run=False):
    """Send; return True if handed over. A failure to mail is reported on
    stderr and never hides the failure that caused the mail. In a dry run
    (``dry_run``: the run's flag) the mail is shown, not sent."""
    if not settings["ADMIN_EMAIL"]:
        return False
    through = ""
    try:
        msg = compose(settings, subject, body)
        if dry_run:
            log.info("[dry run] would mail %s: %s" % (settings["ADMIN_EMAIL"], subject))
            return False
        if settings["SMTP_HOST"]:
            where = getattr(settings, "where", None)  # a failure of the server's: which one, set where
            through = " through %s:%s (SMTP_TLS=%s%s)" % (
                settings["SMTP_HOST"], settings["SMTP_PORT"], settings["SMTP_TLS"],
                ", set in %s" % where("SMTP_HOST") if where else "")
            _smtp(settings, msg)
        else:
            _local(msg, settings["ADMIN_EMAIL"], subject)
        return True
    except Exception as exc:
        shown = str(settings["ADMIN_EMAIL"])
        log.warn("packrat: could not mail %s%s: %s"
                 % (ascii(shown) if _UNSAFE_HEADER.search(shown) else shown, through, log.mask(exc)))
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
        execute.run([mail, "-s", subject] + recipients(to), stdin=msg.get_content().encode(), quiet=True)
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


# -- the night's report (MAIL_ON) -----------------------------------------------------

STATE_DIR = "/var/lib/packrat"  # PACKRAT_STATE_DIR moves it (tests)
STATE_NAME = "state"


def state_path():
    return os.path.join(os.environ.get("PACKRAT_STATE_DIR") or STATE_DIR, STATE_NAME)


def last_status(path=None):
    """"ok" or "failed": the status the previous run left in the state file,
    or None. Never through a symbolic link; a file that is not exactly ours
    counts as none."""
    path = path or state_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    m = re.fullmatch(rb"last_status=(ok|failed)\n?", data)
    return m.group(1).decode() if m else None


def save_status(status, path=None):
    """Keep ``status`` for the next run: a 0600 file written beside the old
    one with O_EXCL|O_NOFOLLOW and renamed over it; the directory is created
    0700 and must be the caller's and not writable by others. A failure is
    a warning (the next run mails as if nothing were known)."""
    path = os.path.abspath(path or state_path())
    directory, base = os.path.split(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(dfd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise OSError("the directory is not yours alone (owner %d, mode %04o)"
                              % (st.st_uid, stat.S_IMODE(st.st_mode)))
            temp = ".%s.%d.tmp" % (base, os.getpid())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dfd)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"last_status=%s\n" % status.encode())
            os.rename(temp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        log.warn("Warning: cannot keep the run's status in %s: %s" % (path, getattr(exc, "strerror", None) or exc))


def success_body(ctx):
    from pypackrat import monitor
    record = monitor.record_of(ctx)
    lines = ["Packrat's run of %s on %s succeeded." % (ctx.today, ctx.hostname), ""]
    lines += monitor.report_lines(record) or ["(nothing was made or uploaded)"]
    return "\n".join(lines) + "\n"


def night(ctx, errors):
    """The night's mail as MAIL_ON asks: a failure always ("Packrat:
    Error"); a success with MAIL_ON=always ("Packrat: Success"), or with
    MAIL_ON=change when the previous run failed ("Packrat: Recovered").
    With change, the run's status is kept for the next run (not in a dry
    run). Returns True when a mail was handed over."""
    settings = ctx.settings
    mode = settings.get("MAIL_ON", "failure") if hasattr(settings, "get") else "failure"
    previous = last_status() if mode == "change" else None
    if mode == "change" and not ctx.dry_run:
        save_status("failed" if errors else "ok")
    if errors:
        return failure(settings, errors, ctx.dry_run)
    if mode == "always":
        return send(settings, "Packrat: Success", success_body(ctx), ctx.dry_run)
    if mode == "change" and previous == "failed":
        return send(settings, "Packrat: Recovered",
                    "The previous run failed; this one succeeded.\n\n" + success_body(ctx), ctx.dry_run)
    return False

