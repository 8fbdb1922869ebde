"""App settings -> the ports and the use-case context, built once per process (on first use, never
at import time), even when the first messages arrive together on several worker threads."""

from __future__ import annotations

import functools
import logging
import random
import threading
from datetime import UTC, datetime

from azure.core.credentials import TokenCredential

from .adapters.budget import CallBudget
from .adapters.identity import CredentialTokenProvider, managed_identity_credential
from .adapters.jira import JiraClient
from .adapters.ledger.approvals import TableApprovals
from .adapters.ledger.audit import TableAudit
from .adapters.ledger.breaker import TableBreaker
from .adapters.ledger.claims import TableClaims
from .adapters.ledger.finals import TableFinals
from .adapters.ledger.store import TableStore, table_client
from .adapters.ledger.submissions import TableSubmissions
from .adapters.ledger.throttle import TableThrottleNotices
from .adapters.mde import MdeClient
from .adapters.queues import QueueOutbox, StorageQueueSender
from .adapters.servicenow import ServiceNowClient
from .errors import TransientError
from .ports import Jira, Ports, ServiceNow
from .settings import Settings, get_settings
from .usecases.context import Context

logger = logging.getLogger(__name__)
_LOCK = threading.Lock()


def context() -> Context:
    """This process's context."""
    with _LOCK:
        return _context()


@functools.cache
def _context() -> Context:
    return build_context(get_settings())


def build_context(settings: Settings) -> Context:
    """The real adapters for ``settings``: MDE with the managed identity's tokens, the queues and the
    ledger table in the containment storage account."""
    credential = managed_identity_credential(settings.azure_client_id)
    tokens = CredentialTokenProvider(credential, settings.mde_token_scope)
    storage_credential = _storage_credential(settings, credential)
    store = TableStore(table_client(settings.storage, settings.ledger_table, storage_credential))
    shares = settings.mde_budget_shares  # one share: this process calls MDE alone, no notice to share
    notices = TableThrottleNotices(store) if shares > 1 else None
    mde = MdeClient(
        settings.mde_api_base_url,
        tokens,
        timeout=(settings.http_connect_timeout, settings.http_read_timeout),
        retries=settings.http_retries,
        budget=CallBudget(shares=shares, notices=notices),
        app_id=settings.azure_client_id,
    )
    ports = Ports(
        mde=mde,
        claims=TableClaims(store),
        breaker=TableBreaker(store, settings.isolation_policy.breaker),
        finals=TableFinals(store),
        audit=TableAudit(store),
        outbox=QueueOutbox(StorageQueueSender(settings.storage, storage_credential), settings.results_queue),
        approvals=TableApprovals(store),
        submissions=TableSubmissions(store),
        clock=lambda: datetime.now(UTC),
        rng=random.Random(),  # noqa: S311 - jitter, not crypto
        jira=_jira(settings),
        servicenow=_servicenow(settings),
    )
    _report_ledger(store, settings)
    if settings.isolation_policy.release.trust_unverified_requests:
        logger.warning(
            "release.trustUnverifiedRequests is on: a release no ticket system confirms is trusted by "
            "its message alone, so whoever can write to %s can release a device",
            settings.release_queue,
        )
    return Context.of(settings, ports)


def _jira(settings: Settings) -> Jira | None:
    jira = settings.jira
    if jira is None:
        return None
    return JiraClient(
        jira.base_url, api_version=jira.api_version, user_email=jira.user_email, api_token=jira.api_token
    )


def _servicenow(settings: Settings) -> ServiceNow | None:
    servicenow = settings.servicenow
    if servicenow is None:
        return None
    return ServiceNowClient(servicenow.base_url, username=servicenow.username, password=servicenow.password)


def _storage_credential(settings: Settings, mde_credential: TokenCredential) -> TokenCredential | None:
    """None with a connection string; else the storage identity (the MDE one when they are the same)."""
    if settings.storage.connection_string:
        return None
    storage_id = settings.storage.client_id
    if storage_id == settings.azure_client_id:
        return mde_credential
    return managed_identity_credential(storage_id)


def _report_ledger(store: TableStore, settings: Settings) -> None:
    """A missing ledger table (or a missing role on it) stops every request; say so once, loudly,
    with what fixes it. A ledger that cannot be checked now is left to the requests' own retries."""
    try:
        problem = store.problem()
    except TransientError as e:
        logger.warning("ledger not checked at startup: %s", e.message)
        return
    if problem is not None:
        logger.error(
            "%s: create it (infra/main.bicep does) or set LEDGER_TABLE (now %r) to the right table; the "
            "identity of CONTAINMENT_STORAGE needs Storage Table Data Contributor on it. Until then every "
            "request fails and is answered Failed (LedgerUnavailable) on its last delivery",
            problem,
            settings.ledger_table,
        )
