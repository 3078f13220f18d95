"""The secret list, once: which settings hold a secret, and the values a
run must never show.

``is_secret(name)`` is the one rule (settings, modules.d files, the
variables of Bash modules); ``looks_secret`` adds the slips of the keyboard
(MYSQL_PSS). A run's secret values live in a ``Secrets`` object that the
run's output owns (``log.setup``): every line printed, logged or mailed,
and the output of Bash modules, is masked with it.
"""
import re

# Settings whose name ends in KEY but that hold the path of a key file, not a key.
KEY_PATHS = ("SSH_KEY",)
_SECRET_END = re.compile(r"(?:^|_)(?:PASS|PASSWORD|PASSWD)$|KEY$")
_SECRET_PART = re.compile(r"SECRET|TOKEN|PASSPHRASE")

MASK = "****"


def is_secret(name):
    """Whether the setting (or Bash module variable) ``name`` holds a secret:
    its value is masked in every output (log, mail, `check`, the output of
    Bash modules) and never shown in a message. The one rule, used
    everywhere: a name ending in _PASS, _PASSWORD, _PASSWD or KEY
    (ENCRYPTION_KEY, S3_SECRET_KEY, S3_ACCESS_KEY, API_KEY), or holding
    SECRET, TOKEN or PASSPHRASE; case does not matter. Names that end in
    KEY but hold a file's path are not secrets: SSH_KEY and *_SSH_KEY.

    A setting's declaration takes its ``secret`` flag from here."""
    upper = str(name).upper()
    if upper in KEY_PATHS or upper.endswith("_SSH_KEY"):
        return False
    return bool(_SECRET_END.search(upper) or _SECRET_PART.search(upper))


def looks_secret(name, closest=None):
    """A secret's name, or an unknown name whose closest known setting is
    one (``closest(name)``: the typo check's guess, MYSQL_PSS -> MYSQL_PASS):
    its value is hidden all the same."""
    if is_secret(name):
        return True
    close = closest(name) if closest else None
    return bool(close) and close != name and is_secret(close)


def register(secrets, items, secret=is_secret):
    """Add to ``secrets`` the values (each item of a list) of the settings
    among ``items`` ((name, value) pairs) that ``secret`` names a secret;
    return the names that held one."""
    names = set()
    for name, value in items:
        if secret(name):
            for item in (value if isinstance(value, list) else [value]):
                if item:
                    secrets.add(item)
                    names.add(name)
    return names


class Secrets:
    """One run's secret values: masked from every output once added."""

    def __init__(self, values=()):
        self._values = set()
        for value in values:
            self.add(value)

    def add(self, value):
        if value:
            self._values.add(str(value))

    def __contains__(self, value):
        return str(value) in self._values

    def __len__(self):
        return len(self._values)

    def ordered(self, extra=()):
        """Longest first, so that a secret containing another is masked whole."""
        return sorted(self._values.union(s for s in extra if s), key=len, reverse=True)

    def mask(self, text, extra=()):
        """``text`` with every secret (and each of ``extra``) replaced by ****."""
        text = str(text)
        for secret in self.ordered(extra):
            text = text.replace(secret, MASK)
        return text

    def as_bytes(self):
        """The secrets as bytes (surrogate escapes back to what they were), longest first."""
        return [s.encode("utf-8", "surrogateescape") for s in self.ordered()]

    def mask_bytes(self, data):
        """``mask`` for bytes (a Bash module's output): bytes that are not
        UTF-8 pass unchanged."""
        for secret in self.as_bytes():
            data = data.replace(secret, MASK.encode())
        return data
