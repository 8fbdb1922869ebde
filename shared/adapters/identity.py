"""App-only tokens for the MDE API from the function's managed identity."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.identity import ManagedIdentityCredential

from ..errors import TransientError

logger = logging.getLogger(__name__)


class TokenProvider(Protocol):
    """Gives a bearer token for the MDE API."""

    def get_token(self) -> str: ...


def managed_identity_credential(client_id: str | None) -> ManagedIdentityCredential:
    """System-assigned identity, or the user-assigned one named by ``client_id``."""
    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return ManagedIdentityCredential()


class CredentialTokenProvider:
    """Tokens for one scope from an azure-identity credential (which caches and refreshes them)."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        # One request at a time: on a cold process a burst of first messages would otherwise each
        # ask the endpoint (msal does not single-flight); after the first, the cache answers.
        self._lock = threading.Lock()

    def get_token(self) -> str:
        try:
            with self._lock:
                return self._credential.get_token(self._scope).token
        except AzureError as e:
            # The endpoint may be briefly unavailable (instance start, throttling): retry later.
            logger.warning("token request failed scope=%s error=%s", self._scope, type(e).__name__)
            raise TransientError("TokenUnavailable", f"managed identity token request failed: {e}") from e
