"""A local App Service managed-identity endpoint, as ``ManagedIdentityCredential`` speaks to it.

With ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` set, azure-identity (through msal) sends::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<scope without /.default>[&client_id=<id>]
    X-IDENTITY-HEADER: <IDENTITY_HEADER>

and reads ``access_token`` and ``expires_on`` (epoch seconds as a string) from the JSON answer;
``resource``, ``token_type`` and ``client_id`` are returned too, as App Service does. Tokens are
dev JWTs (``devstack.tokens``) whose ``aud`` is the requested resource and whose ``roles`` are the
roles granted here. Errors use App Service's shape ``{"statusCode", "message", "correlationId"}``:
401 for a missing or wrong ``X-IDENTITY-HEADER``, 400 for a wrong api-version, a missing resource,
an unknown ``client_id`` or an ``mi_res_id``/``object_id`` selector (not supported here).
msal caches tokens and treats one with under 5 minutes left as expired: with a lifetime below
300 s every ``get_token`` reaches this endpoint.

Control API (no auth):
    POST /_control/fail   {"count": N, "status": 500}  the next N token requests (that passed the
                          header check) fail with that status
    POST /_control/roles  {"roles": ["Machine.Isolate", ...]}  roles put into tokens from now on
    GET  /_control/stats  {"tokenRequests": n, "failuresPending": m, "roles": [...]}
    POST /_control/reset  counters, pending failures and roles back to their start values

CLI (prints the two environment variables to export)::

    python -m devstack.identity_endpoint --port 8082 --signing-secret "$DEV_SIGNING_SECRET" \\
        [--header-secret S] [--client-id ID ...] [--role Machine.Isolate ...] [--lifetime 3600]
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .serving import BackgroundServer, JsonHandler
from .tokens import mint_token

logger = logging.getLogger(__name__)

API_VERSION = "2019-08-01"
DEFAULT_ROLES = ("Machine.Isolate", "Machine.Read.All")
SYSTEM_ASSIGNED_CLIENT_ID = "5b0c3d2e-1f4a-4b6c-9d8e-7f6a5b4c3d2e"
DEV_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TOKEN_PATH = "/msi/token"


class IdentityEndpoint:
    """``start()`` gives the ``IDENTITY_ENDPOINT`` URL; ``header_secret`` is ``IDENTITY_HEADER``."""

    def __init__(
        self,
        *,
        signing_secret: str,
        header_secret: str | None = None,
        roles: Sequence[str] = DEFAULT_ROLES,
        client_ids: Sequence[str] = (),
        system_client_id: str = SYSTEM_ASSIGNED_CLIENT_ID,
        tenant_id: str = DEV_TENANT_ID,
        lifetime_s: int = 3600,
    ) -> None:
        self.signing_secret = signing_secret
        self.header_secret = header_secret or secrets.token_urlsafe(24)
        self.system_client_id = system_client_id
        self.client_ids = {c.lower() for c in client_ids}
        self.tenant_id = tenant_id
        self.lifetime_s = lifetime_s
        self._initial_roles = list(roles)
        self.roles = list(roles)
        self.token_requests = 0
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = BackgroundServer(_Handler, self, "identity-endpoint")
        self.url = ""

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a background thread; returns the full token URL."""
        self.url = self._server.start(host, port) + f"{TOKEN_PATH}"
        logger.info("identity endpoint listening url=%s", self.url)
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._lock:
            self.token_requests = 0
            self._failures.clear()
            self.roles = list(self._initial_roles)

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def set_roles(self, roles: Sequence[str]) -> None:
        with self._lock:
            self.roles = list(roles)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tokenRequests": self.token_requests,
                "failuresPending": len(self._failures),
                "roles": list(self.roles),
            }

    def issue(self, query: dict[str, str], identity_header: str | None) -> tuple[int, dict[str, Any]]:
        """One token request: (status, JSON body)."""
        if identity_header is None or not secrets.compare_digest(identity_header, self.header_secret):
            return _error(401, "The X-IDENTITY-HEADER header is missing or wrong.")
        with self._lock:
            if self._failures:
                return _error(self._failures.pop(0), "Injected failure.")
        if query.get("api-version") != API_VERSION:
            return _error(400, f"Unsupported api-version; this endpoint speaks {API_VERSION}.")
        resource = query.get("resource", "")
        if not resource:
            return _error(400, "The resource parameter is required.")
        if "mi_res_id" in query or "object_id" in query:
            return _error(400, "Only client_id selects a user-assigned identity here.")
        client_id = query.get("client_id") or self.system_client_id
        if "client_id" in query and client_id.lower() not in self.client_ids:
            return _error(400, "Unable to load the proper Managed Identity.")
        with self._lock:
            roles = list(self.roles)
        token, expires_on = mint_token(
            audience=resource,
            roles=roles,
            client_id=client_id,
            tenant_id=self.tenant_id,
            lifetime_s=self.lifetime_s,
            secret=self.signing_secret,
        )
        with self._lock:
            self.token_requests += 1
        logger.info("token issued client_id=%s resource=%s", client_id, resource)
        return 200, {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }

    def control(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/_control/stats":
            return 200, self.stats()
        if method == "POST" and path == "/_control/reset":
            self.reset()
            return 200, self.stats()
        if method == "POST" and path == "/_control/fail" and isinstance(body, dict):
            count, status = body.get("count", 1), body.get("status", 500)
            if isinstance(count, int) and isinstance(status, int) and 400 <= status <= 599:
                self.fail_next(count, status)
                return 200, self.stats()
        if method == "POST" and path == "/_control/roles" and isinstance(body, dict):
            roles = body.get("roles")
            if isinstance(roles, list) and all(isinstance(r, str) for r in roles):
                self.set_roles(roles)
                return 200, self.stats()
        return _error(400 if path.startswith("/_control/") else 404, f"Unknown request {method} {path}.")


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}


class _Handler(JsonHandler):
    server_version = "devstack-identity/1.0"

    def dispatch(self, method: str) -> None:
        app: IdentityEndpoint = self.server.app  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        if url.path.startswith("/_control/"):
            raw = self.read_body()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            status, payload = app.control(method, url.path, body)
        elif method == "GET" and url.path == TOKEN_PATH:
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            status, payload = app.issue(query, self.headers.get("X-IDENTITY-HEADER"))
        else:
            status, payload = _error(404, "Not found.")
        self.send_json(status, payload)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.identity_endpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--signing-secret", required=True, help="shared with the MDE simulator")
    parser.add_argument("--header-secret", help="the IDENTITY_HEADER value (random if omitted)")
    parser.add_argument("--client-id", action="append", default=[], help="a user-assigned client id")
    parser.add_argument("--role", action="append", help="a role to grant (repeatable)")
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    endpoint = IdentityEndpoint(
        signing_secret=args.signing_secret,
        header_secret=args.header_secret,
        roles=args.role or DEFAULT_ROLES,
        client_ids=args.client_id,
        lifetime_s=args.lifetime,
    )
    url = endpoint.start(args.host, args.port)
    # The CLI's output is the configuration to export, so it goes to stdout rather than the log.
    print(f"IDENTITY_ENDPOINT={url}\nIDENTITY_HEADER={endpoint.header_secret}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        endpoint.stop()


if __name__ == "__main__":
    main()
