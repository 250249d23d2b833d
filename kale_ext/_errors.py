"""The exception hierarchy: everything kale raises on purpose derives from KaleError."""

from __future__ import annotations


class KaleError(Exception):
    """Base of every error kale_ext raises on purpose."""


class ConfigError(KaleError, ValueError):
    """A configuration value or keyword argument broke a rule."""


class BackendNotFound(ConfigError):
    """No installed backend or batch system has the requested name."""


class LayoutError(ConfigError):
    """A model layout string broke the grammar or its shapes do not fit.

    Carries the offending token, its index among the layers, its character offset in
    the layout string and the rule it broke.
    """

    def __init__(self, message: str, *, token: str = "", index: int = -1, offset: int = -1,
                 rule: str = "") -> None:
        super().__init__(message)
        self.token = token
        self.index = index
        self.offset = offset
        self.rule = rule


class ClusterError(KaleError):
    """A cluster could not be started, reached, scaled or stopped."""


class BatchJobError(ClusterError):
    """The batch system rejected a job, or a job died before its workers connected.

    Carries the batch system's own message and the job id when there is one.
    """

    def __init__(self, message: str, *, job_id: str | None = None, output: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.output = output


class ClusterNotFound(ClusterError, LookupError):
    """No registry record matches the requested cluster id."""


class SearchError(KaleError):
    """A search was defined or driven wrongly."""


class SpaceError(SearchError, ValueError):
    """A search space is malformed."""


class TrialError(SearchError):
    """A trial failed; carries the remote traceback text."""

    def __init__(self, message: str, *, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class ChannelError(KaleError):
    """The metric channel could not deliver or authenticate a message."""


class StoreError(KaleError):
    """The search store could not be read or written."""


class TrialStopped(KaleError):
    """Raised inside trial code by ``kale.report`` when the driver ends the trial."""

    def __init__(self, reason: str = "stopped by the search driver") -> None:
        super().__init__(reason)
        self.reason = reason


class TrialPruned(TrialStopped):
    """Raised inside trial code when an early-stopping scheduler prunes the trial."""
