"""Exceptions a user can cause. Each message names the file or prior and what to do about it."""


class DWPError(Exception):
    """Base class of dwp-hub's user-facing errors."""


class PriorFormatError(DWPError):
    """A prior folder exists but its files are missing, corrupt or disagree with each other."""


class PriorNotFoundError(DWPError):
    """No local folder, Hub repository or bundled prior answers to a name."""
