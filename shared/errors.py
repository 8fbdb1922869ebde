"""The error taxonomy: one place decides what is permanent and what is transient.

* ``PermanentError``: retrying cannot help (bad input, unknown machine, missing permission).
  The use case reports it on the results queue and the message completes.
* ``TransientError``: the same request may succeed later (429, 5xx, network, token endpoint,
  results queue). The host redelivers the message; on the last delivery it is reported first.
* ``ConfigError``: the app is mis-configured; raised at startup, names the setting.
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A missing or malformed app setting. The message names the setting."""


class ContainmentError(Exception):
    """Base of every error that ends up in a result message's ``error`` object."""

    retryable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_result_error(self) -> dict[str, Any]:
        """The ``error`` object of a result message."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class PermanentError(ContainmentError):
    """Retrying cannot help: report and complete the message."""


class InvalidRequest(PermanentError):
    """The request itself is unusable (not JSON, schema violation, bad identifier)."""


class TransientError(ContainmentError):
    """The same request may succeed later: let the host redeliver it."""

    retryable = True

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Throttled(TransientError):
    """429: a rate limit. The request waits (re-enqueued) for ``retry_after`` seconds instead of
    spending host redeliveries. ``frees_within`` (seconds, when the caller knows it) is how soon
    after ``retry_after`` the limit frees the slots this process used: the waits need not be
    spread wider than that."""

    frees_within: float | None = None


class MdeApiError(ContainmentError):
    """An error response (or no response) from the MDE API, with the facts needed to chase it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.method = method
        self.url = url
        self.status = status
        self.target = target

    def __str__(self) -> str:
        return (
            f"{self.method} {self.url} -> {self.status}: {self.code}: {self.message}"
            f" (mde_target={self.target})"
        )

    def to_result_error(self) -> dict[str, Any]:
        error = super().to_result_error()
        error.update({"httpStatus": self.status, "mdeTarget": self.target})
        return error


class MdePermanentError(MdeApiError, PermanentError):
    """400 validation errors, 401, 403, 404: MDE will give the same answer again."""


class MdeNotFound(MdePermanentError):
    """404: the machine or action does not exist (or is not visible to this app)."""


class ActionAlreadyPending(MdePermanentError):
    """MDE refused the action because one of the same type is already pending on the machine."""


class MdeTransientError(MdeApiError, TransientError):
    """429, 5xx, timeouts and connection errors."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        target: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, method=method, url=url, status=status, target=target)
        self.retry_after = retry_after


class MdeThrottled(MdeTransientError, Throttled):
    """429: MDE's rate limit for this API."""


class MdeThrottledLocally(MdeThrottled):
    """Not sent: MDE answered an earlier call to the same API with 429, and its ``Retry-After`` has
    not passed yet (``retry_after`` is what is left). Status 429 and code ``TooManyRequests``, as
    MDE's own answer would have been; it cost no MDE call."""
