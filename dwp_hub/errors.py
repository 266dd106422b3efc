"""Exceptions a user can cause. Each message names the file or prior and what to do about it."""


class DWPError(Exception):
    """Base class of dwp-hub's user-facing errors."""


class PriorFormatError(DWPError):
    """A prior folder exists but its files are missing, corrupt or disagree with each other."""


class PriorNotFoundError(DWPError, FileNotFoundError):
    """No bundled prior, local folder or Hub repository answers to a name (a FileNotFoundError, as on the Hub)."""


class PublishError(DWPError):
    """A push was refused before upload, or the Hub refused or failed it. The message says which and why."""
