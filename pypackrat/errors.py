"""The exceptions packrat reports as one line, never as a traceback."""


class PackratError(Exception):
    """A failure with a message meant for the operator (stderr and mail)."""


class ConfigError(PackratError):
    """The configuration is unusable; ``problems`` holds one line each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class LockedError(PackratError):
    """Another run holds the lock."""


class PartialFailure(PackratError):
    """Some of a module's archives failed; ``made`` holds the final paths of
    those that were made (they are still uploaded)."""

    def __init__(self, message, made):
        super().__init__(message)
        self.made = list(made)


class Terminated(BaseException):
    """SIGTERM (cron's timeout, a shutdown): unwinds the run so that
    temporary files are removed and child processes stopped."""
