"""The one HTTP transport of the ticket-system clients (Jira, ServiceNow), and their errors.

The transport owns the session, the Authorization header, ``(connect, read)`` timeouts, redirects
refused, bounded jittered retries, and the mapping of error answers to typed errors (one table,
``error_class``); the clients only validate identifiers and build paths.

Every error carries the HTTP status, a code that names the ticket system (``JiraUnauthorized``,
``ServiceNowThrottled``, ...), a message, the method and the URL, never a credential:

    status                 class                  code suffix      family
    400, other 3xx/4xx     TicketBadRequest       BadRequest /     permanent
                                                  HttpError
    401                    TicketUnauthorized     Unauthorized     permanent
    403                    TicketForbidden        Forbidden        permanent
    404                    TicketNotFound         TicketNotFound   permanent
    429                    TicketThrottled        Throttled        transient, ``retry_after``
    408, 5xx, timeout,     TicketUnavailable      Unavailable      transient, ``retry_after``
    no connection                                                  when the answer had one
    2xx that is not JSON   TicketUnavailable      InvalidResponse  transient

Retries: a read (GET) is retried on ``TicketUnavailable`` up to ``retries`` times with jittered
exponential backoff; a 429 never is (its ``Retry-After`` is the caller's to honour). A write (POST,
PATCH) is retried only when it surely did not reach the application (no connection made, or 502/503
from the front door): otherwise a retry could post a second comment. A write that failed after it
may have been applied says so with ``maybe_applied=True``.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.auth import AuthBase
from urllib3.exceptions import NewConnectionError

from ..errors import ConfigError, ContainmentError, InvalidRequest, PermanentError, Throttled, TransientError

logger = logging.getLogger(__name__)

TicketSystem = Literal["Jira", "ServiceNow"]
MAX_RETRY_AFTER_S = 3600.0  # a longer Retry-After is not a wait worth holding a request for
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WRITE_RETRY_STATUSES = frozenset({502, 503})  # answered by the front door: the write did not land
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: nothing that could split a header


class TicketApiError(ContainmentError):
    """An error answer (or no answer) from a ticket system."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        system: TicketSystem,
        method: str,
        url: str,
        status: int | None = None,
        request_id: str | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(code, message)
        self.system = system
        self.method = method
        self.url = url
        self.status = status
        self.request_id = request_id
        self.maybe_applied = maybe_applied

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}: {self.code}: {self.message}"

    def to_result_error(self) -> dict[str, Any]:
        error = super().to_result_error()
        error.update({"httpStatus": self.status, "ticketSystem": self.system})
        return error


class TicketPermanentError(TicketApiError, PermanentError):
    """The ticket system will give the same answer again."""


class TicketBadRequest(TicketPermanentError):
    """400, or another 3xx/4xx without a class of its own (a redirect is never followed)."""


class TicketUnauthorized(TicketPermanentError):
    """401: the credentials are missing or wrong."""


class TicketForbidden(TicketPermanentError):
    """403: authenticated, but not allowed (ACLs, permissions, an account Jira refuses)."""


class TicketNotFound(TicketPermanentError):
    """404: no such ticket, or one the account may not see (both systems answer the same)."""


class TicketTransientError(TicketApiError, TransientError):
    """The same call may succeed later; ``retry_after`` is the server's ``Retry-After`` (seconds)."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None, **facts: Any) -> None:
        super().__init__(code, message, **facts)
        self.retry_after = retry_after


class TicketThrottled(TicketTransientError, Throttled):
    """429: rate-limited; call again after ``retry_after`` seconds."""


class TicketUnavailable(TicketTransientError):
    """5xx, 408, a timeout, no connection, or a success answer that cannot be read."""


# status -> (class, code suffix) for answers that are not 2xx. Unlisted: >= 500 is Unavailable,
# anything else (3xx, other 4xx) is a BadRequest named HttpError.
_ERRORS_BY_STATUS: dict[int, tuple[type[TicketApiError], str]] = {
    400: (TicketBadRequest, "BadRequest"),
    401: (TicketUnauthorized, "Unauthorized"),
    403: (TicketForbidden, "Forbidden"),
    404: (TicketNotFound, "TicketNotFound"),
    408: (TicketUnavailable, "Unavailable"),
    429: (TicketThrottled, "Throttled"),
}


def error_class(status: int) -> tuple[type[TicketApiError], str]:
    """The error class and code suffix for an HTTP status that is not a success."""
    found = _ERRORS_BY_STATUS.get(status)
    if found is not None:
        return found
    return (TicketUnavailable, "Unavailable") if status >= 500 else (TicketBadRequest, "HttpError")


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), between 0 and 3,600."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now()
        except (TypeError, ValueError):
            return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def full_match(pattern: re.Pattern[str], value: object, code: str, message: str) -> str:
    """``value`` when the whole of it matches ``pattern``; otherwise ``InvalidRequest(code)``, so
    nothing else goes near a URL."""
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise InvalidRequest(code, message)


def validate_base_url(url: str, setting: str) -> str:
    """An https base URL (http only on loopback, for the dev stack), without credentials, query or
    fragment; returned without a trailing slash. Anything else is a ``ConfigError`` naming
    ``setting``."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except (ValueError, AttributeError):
        raise ConfigError(f"{setting} is not a URL") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{setting} must not carry credentials; they have settings of their own")
    host = parts.hostname or ""
    secure = parts.scheme == "https" and bool(host)
    if not (secure or (parts.scheme == "http" and host in LOOPBACK_HOSTS)):
        raise ConfigError(f"{setting} must be an https:// URL (http:// only on loopback), got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{setting} must not have a query or fragment, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class HeaderAuth(AuthBase):
    """Sets ``Authorization`` on each request. Given as ``auth=`` so requests never swaps in
    credentials from ``~/.netrc``; its repr hides the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "HeaderAuth(<redacted>)"


def basic_auth(user: str, secret: str, *, settings: tuple[str, str]) -> HeaderAuth:
    """HTTP Basic; a user with ``:`` cannot be sent, an empty value is a missing setting.
    ``settings`` names the two settings for the errors."""
    if not user or ":" in user or any(c in user for c in "\r\n"):
        raise ConfigError(f"{settings[0]} must be set, without ':' or line breaks")
    if not secret:
        raise ConfigError(f"{settings[1]} must be set")
    token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
    return HeaderAuth(f"Basic {token}")


def bearer_auth(token: str, *, setting: str) -> HeaderAuth:
    if not _HEADER_SAFE.fullmatch(token or ""):
        raise ConfigError(f"{setting} must be set, as visible ASCII without spaces")
    return HeaderAuth(f"Bearer {token}")


class TicketTransport:
    """Calls one ticket system. Create once per process and reuse."""

    def __init__(
        self,
        system: TicketSystem,
        base_url: str,
        *,
        setting: str,
        auth: HeaderAuth,
        error_message: Callable[[Any], str | None],
        request_id_headers: tuple[str, ...] = (),
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system: TicketSystem = system
        self.base_url = validate_base_url(base_url, setting)
        self._auth = auth
        self._error_message = error_message
        self._request_id_headers = request_id_headers
        self._session = session or requests.Session()
        self._timeout = timeout
        self._retries = max(0, retries)
        self._sleep = sleep

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The full URL of a call: ``path`` must be built from validated parts, ``params`` are
        percent-encoded here (``^``, ``=`` and ``,`` included)."""
        query = f"?{urlencode(params, quote_via=quote, safe='')}" if params else ""
        return f"{self.base_url}{path}{query}"

    def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None
    ) -> Any:
        """One API call: its parsed JSON answer (None for an empty one), or a ``TicketApiError``."""
        url = self.url(path, params)
        idempotent = method in ("GET", "HEAD")
        for attempt in range(self._retries + 1):
            try:
                return self._once(method, url, json, idempotent)
            except TicketTransientError as error:
                retry = not isinstance(error, TicketThrottled) and (idempotent or not error.maybe_applied)
                if not retry or attempt == self._retries:
                    logger.warning("ticket call failed system=%s %s", self.system, error)
                    raise
                self._sleep(random.uniform(0.5, 1.5) * 2**attempt)  # noqa: S311 - jitter, not crypto
            except TicketApiError as error:
                logger.warning("ticket call failed system=%s %s", self.system, error)
                raise
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: Any, idempotent: bool) -> Any:
        try:
            response = self._session.request(
                method,
                url,
                json=body,
                headers={"Accept": "application/json"},
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise self._no_answer(method, url, e, idempotent) from e
        if response.status_code >= 300:
            raise self._from_response(method, url, response, idempotent)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise self.invalid_response(method, url, "the answer is not JSON", not idempotent) from e

    def _no_answer(
        self, method: str, url: str, error: requests.RequestException, idempotent: bool
    ) -> TicketApiError:
        reason = getattr(error.args[0], "reason", None) if error.args else None
        never_sent = isinstance(error, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
        what = "no answer within the timeout" if isinstance(error, requests.Timeout) else "no connection"
        # The exception's own text can name a proxy URL and its credentials: only its type goes out.
        message = f"{what} ({type(error).__name__})"
        return TicketUnavailable(
            f"{self.system}Unavailable",
            message,
            system=self.system,
            method=method,
            url=url,
            maybe_applied=not idempotent and not never_sent,
        )

    def _from_response(
        self, method: str, url: str, response: requests.Response, idempotent: bool
    ) -> TicketApiError:
        status = response.status_code
        cls, suffix = error_class(status)
        try:
            body = response.json()
        except ValueError:
            body = None
        message = (self._error_message(body) or f"HTTP {status} {response.reason or ''}".strip())[:500]
        facts: dict[str, Any] = {
            "system": self.system,
            "method": method,
            "url": url,
            "status": status,
            "request_id": next(
                (response.headers[h] for h in self._request_id_headers if h in response.headers), None
            ),
            "maybe_applied": not idempotent
            and cls is TicketUnavailable
            and status not in WRITE_RETRY_STATUSES,
        }
        if issubclass(cls, TicketTransientError):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return cls(f"{self.system}{suffix}", message, retry_after=retry_after, **facts)
        return cls(f"{self.system}{suffix}", message, **facts)

    def invalid_response(
        self, method: str, url: str, message: str, maybe_applied: bool = False
    ) -> TicketUnavailable:
        """A success answer the client cannot use (a transient error: the next answer may be fine)."""
        return TicketUnavailable(
            f"{self.system}InvalidResponse",
            message,
            system=self.system,
            method=method,
            url=url,
            maybe_applied=maybe_applied,
        )
