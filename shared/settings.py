"""App settings: read from the environment once per process, validated, frozen.

Every setting is documented in docs/configuration.md. A missing or malformed setting
raises ``ConfigError`` naming it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from .domain.events.ticket_mappings import TicketMappings, load_ticket_mappings
from .domain.model import GUID
from .domain.policy_config import IsolationPolicy, load_isolation_policy
from .errors import ConfigError

APP_ROOT = Path(__file__).resolve().parent.parent

# cloud -> (API base URL, app-only token scope), as docs/mde-api.md lists them.
CLOUDS: dict[str, tuple[str, str]] = {
    "Commercial": (
        "https://api.security.microsoft.com",
        "https://api.securitycenter.microsoft.com/.default",
    ),
    "GCC": (
        "https://api-gcc.securitycenter.microsoft.us",
        "https://api-gcc.securitycenter.microsoft.us/.default",
    ),
    "GCCHigh": (
        "https://api-gov.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us/.default",
    ),
    "DoD": (
        "https://api-gov.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us/.default",
    ),
}

STORAGE_CONNECTION = "CONTAINMENT_STORAGE"
_QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: a connection string, or identity-based URIs."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Validated app settings."""

    mde_cloud: str
    mde_api_base_url: str
    mde_token_scope: str
    azure_client_id: str | None
    isolation_queue: str
    release_queue: str
    results_queue: str
    storage: StorageSettings
    http_connect_timeout: float
    http_read_timeout: float
    max_dequeue_count: int
    ledger_table: str
    tracking_schedule: tuple[int, ...]
    tracking_deadline: timedelta
    device_offline_after: timedelta
    max_throttled_attempts: int
    http_retries: int
    isolation_policy: IsolationPolicy
    ticket_mappings: TicketMappings
    dry_run: bool
    device_cache_seconds: float
    mde_budget_shares: int = 1  # processes that may call MDE for the app at once (CallBudget)
    jira: JiraSettings | None = None  # None: releases from Jira cannot be verified
    servicenow: ServiceNowSettings | None = None  # None: releases from ServiceNow cannot be verified

    @property
    def jira_base_url(self) -> str | None:
        return self.jira.base_url if self.jira else None

    @property
    def servicenow_base_url(self) -> str | None:
        return self.servicenow.base_url if self.servicenow else None


@dataclass(frozen=True)
class JiraSettings:
    """A Jira site releases are verified against (Cloud REST v3, or Data Center REST v2)."""

    base_url: str
    api_version: Literal[2, 3]
    user_email: str | None  # None: the token is a Data Center personal access token (Bearer)
    api_token: str = field(repr=False)


@dataclass(frozen=True)
class ServiceNowSettings:
    """A ServiceNow instance releases are verified against."""

    base_url: str
    username: str
    password: str = field(repr=False)


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _https_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _optional(env, name) or default
    # http:// only for loopback: the local dev stack. A token never goes over plain http elsewhere.
    loopback = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", value)
    if not (value.startswith("https://") or loopback):
        raise ConfigError(f"{name} must be an https:// URL (got {value!r})")
    return value.rstrip("/")


def _secret(env: Mapping[str, str], name: str, needed_by: str) -> str:
    """A credential: required once ``needed_by`` is set; an unresolved Key Vault reference (the
    platform could not read the secret) is a configuration error, never a password."""
    value = _optional(env, name)
    if value is None:
        raise ConfigError(f"{name} must be set when {needed_by} is set")
    if value.startswith("@Microsoft.KeyVault("):
        raise ConfigError(
            f"{name} is an unresolved Key Vault reference: check that the secret exists and that the "
            "app's identity holds Key Vault Secrets User on it (docs/deploy.md)"
        )
    return value


def _jira(env: Mapping[str, str]) -> JiraSettings | None:
    if _optional(env, "JIRA_BASE_URL") is None:
        return None
    version = _optional(env, "JIRA_API_VERSION") or "3"
    if version not in ("2", "3"):
        raise ConfigError(f"JIRA_API_VERSION must be 3 (Jira Cloud) or 2 (Data Center), got {version!r}")
    return JiraSettings(
        base_url=_https_url(env, "JIRA_BASE_URL", ""),
        api_version=2 if version == "2" else 3,
        user_email=_optional(env, "JIRA_USER_EMAIL"),
        api_token=_secret(env, "JIRA_API_TOKEN", "JIRA_BASE_URL"),
    )


def _servicenow(env: Mapping[str, str]) -> ServiceNowSettings | None:
    if _optional(env, "SERVICENOW_BASE_URL") is None:
        return None
    username = _optional(env, "SERVICENOW_USERNAME")
    if username is None:
        raise ConfigError("SERVICENOW_USERNAME must be set when SERVICENOW_BASE_URL is set")
    return ServiceNowSettings(
        base_url=_https_url(env, "SERVICENOW_BASE_URL", ""),
        username=username,
        password=_secret(env, "SERVICENOW_PASSWORD", "SERVICENOW_BASE_URL"),
    )


def _queue_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = _optional(env, name) or default
    if not _QUEUE_NAME.fullmatch(value):
        raise ConfigError(
            f"{name} must be a storage queue name (3-63 lowercase letters, digits, hyphens); got {value!r}"
        )
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} (got {raw!r})")
    return value


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = _optional(env, name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false (got {raw!r})")
    return raw.lower() == "true"


def _table_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = _optional(env, name) or default
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", value):
        raise ConfigError(f"{name} must be a table name (3-63 letters and digits); got {value!r}")
    return value


def _schedule(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        steps = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated seconds, e.g. 30,60,120 (got {raw!r})") from None
    if not steps or any(not 1 <= step <= 3600 for step in steps):
        raise ConfigError(f"{name} steps must be between 1 and 3600 seconds (got {raw!r})")
    return steps


def _storage(env: Mapping[str, str]) -> StorageSettings:
    conn = _optional(env, STORAGE_CONNECTION)
    if conn:
        return StorageSettings(connection_string=conn)
    uri = _optional(env, f"{STORAGE_CONNECTION}__queueServiceUri")
    if not uri:
        raise ConfigError(
            f"{STORAGE_CONNECTION} (connection string) or {STORAGE_CONNECTION}__queueServiceUri "
            "(identity-based) must be set"
        )
    credential = _optional(env, f"{STORAGE_CONNECTION}__credential")
    if credential is not None and credential.lower() != "managedidentity":
        raise ConfigError(f"{STORAGE_CONNECTION}__credential must be 'managedidentity' (got {credential!r})")
    client_id = _optional(env, f"{STORAGE_CONNECTION}__clientId")
    if client_id is not None and not GUID.fullmatch(client_id):
        raise ConfigError(f"{STORAGE_CONNECTION}__clientId must be a GUID (got {client_id!r})")
    table_uri = _optional(env, f"{STORAGE_CONNECTION}__tableServiceUri")
    return StorageSettings(
        queue_service_uri=uri.rstrip("/"),
        table_service_uri=table_uri.rstrip("/") if table_uri else None,
        client_id=client_id,
    )


def effective_host_json(env: Mapping[str, str], root: Path = APP_ROOT) -> dict[str, Any]:
    """host.json as the Functions host sees it, with ``AzureFunctionsJobHost__`` overrides."""
    config: dict[str, Any] = json.loads((root / "host.json").read_text(encoding="utf-8"))
    prefix = "azurefunctionsjobhost__"
    for key, value in env.items():
        if not key.lower().startswith(prefix):
            continue
        node = config
        *parents, leaf = key[len(prefix) :].split("__")
        for part in parents:
            match = next((k for k in node if k.lower() == part.lower()), part)
            node = node.setdefault(match, {})
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value
    return config


def _max_dequeue_count(env: Mapping[str, str]) -> int:
    queues = effective_host_json(env).get("extensions", {}).get("queues", {})
    raw = queues.get("maxDequeueCount", 5)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"host.json extensions.queues.maxDequeueCount: bad value {raw!r}") from None
    if value < 1:
        raise ConfigError("host.json extensions.queues.maxDequeueCount must be at least 1")
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting from ``env``; raise ``ConfigError`` naming the first bad one."""
    cloud = _optional(env, "MDE_CLOUD") or "Commercial"
    if cloud not in CLOUDS:
        raise ConfigError(f"MDE_CLOUD must be one of {', '.join(CLOUDS)} (got {cloud!r})")
    base_url, scope = CLOUDS[cloud]
    token_scope = _optional(env, "MDE_TOKEN_SCOPE") or scope
    if not token_scope.startswith(("https://", "api://")):
        raise ConfigError(f"MDE_TOKEN_SCOPE must be a resource URI scope (got {token_scope!r})")
    client_id = _optional(env, "AZURE_CLIENT_ID")
    if client_id is not None and not GUID.fullmatch(client_id):
        raise ConfigError(f"AZURE_CLIENT_ID must be a GUID (got {client_id!r})")
    return Settings(
        mde_cloud=cloud,
        mde_api_base_url=_https_url(env, "MDE_API_BASE_URL", base_url),
        mde_token_scope=token_scope,
        azure_client_id=client_id,
        isolation_queue=_queue_name(env, "ISOLATION_QUEUE", "isolation-requests"),
        release_queue=_queue_name(env, "RELEASE_QUEUE", "release-requests"),
        results_queue=_queue_name(env, "RESULTS_QUEUE", "machine-action-results"),
        storage=_storage(env),
        http_connect_timeout=_number(env, "MDE_HTTP_CONNECT_TIMEOUT", 5.0, 0.1, 120),
        http_read_timeout=_number(env, "MDE_HTTP_READ_TIMEOUT", 30.0, 0.1, 600),
        max_dequeue_count=_max_dequeue_count(env),
        ledger_table=_table_name(env, "LEDGER_TABLE", "containmentledger"),
        tracking_schedule=_schedule(env, "TRACKING_SCHEDULE", (30, 60, 120, 240, 480, 900)),
        tracking_deadline=timedelta(hours=_number(env, "TRACKING_DEADLINE_HOURS", 48, 0.001, 24 * 7)),
        device_offline_after=timedelta(
            minutes=_number(env, "DEVICE_OFFLINE_AFTER_MINUTES", 1440, 1, 60 * 24 * 30)
        ),
        max_throttled_attempts=int(_number(env, "MDE_MAX_THROTTLED_ATTEMPTS", 20, 1, 1000)),
        http_retries=int(_number(env, "MDE_HTTP_RETRIES", 2, 0, 5)),
        isolation_policy=load_isolation_policy(_optional(env, "ISOLATION_POLICY")),
        ticket_mappings=load_ticket_mappings(_optional(env, "TICKET_MAPPINGS")),
        dry_run=_boolean(env, "DRY_RUN", default=False),
        device_cache_seconds=_number(env, "DEVICE_CACHE_SECONDS", 300, 0, 3600),
        mde_budget_shares=int(_number(env, "MDE_BUDGET_SHARES", 1, 1, 1000)),
        jira=_jira(env),
        servicenow=_servicenow(env),
    )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return load_settings(os.environ)
