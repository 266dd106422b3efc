"""Exceptions a user can cause. Each message names the file or prior and what to do about it."""


class DWPError(Exception):
    """Base class of dwp-hub's user-facing errors."""


class PriorFormatError(DWPError):
    """A prior folder exists but its files are missing, corrupt or disagree with each other."""


class PriorNotFoundError(DWPError, FileNotFoundError):
    """No bundled prior, local folder or Hub repository answers to a prior or source-checkpoint name, or (as
    the subclass `NotCachedError`) it could only come from the Hub cache and is not there.
    A FileNotFoundError, as on the Hub."""


class NotCachedError(PriorNotFoundError):
    """A repository that could only come from the local Hub cache (offline) is not there."""


class PublishError(DWPError):
    """A push was refused before upload, or the Hub refused or failed it. The message says which and why."""
