"""The local managed-identity endpoint, spoken to by the real ``ManagedIdentityCredential``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from azure.identity import ManagedIdentityCredential

from devstack.identity_endpoint import DEFAULT_ROLES, SYSTEM_ASSIGNED_CLIENT_ID, IdentityEndpoint
from devstack.mde_simulator import MdeSimulator
from devstack.tokens import TokenError, verify_token

pytestmark = pytest.mark.integration

SECRET = "test-signing-secret-0123456789abcdef"
USER_ASSIGNED = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RESOURCE = "https://api.securitycenter.microsoft.com"
SCOPE = f"{RESOURCE}/.default"


@pytest.fixture
def endpoint() -> Iterator[IdentityEndpoint]:
    server = IdentityEndpoint(signing_secret=SECRET, client_ids=[USER_ASSIGNED])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app_service_env(endpoint: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment App Service gives a Function App with a managed identity."""
    for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", endpoint.header_secret)


def claims(token: str) -> dict[str, Any]:
    return verify_token(token, secret=SECRET, audiences={RESOURCE})


def control(endpoint: IdentityEndpoint, method: str, path: str, body: Any = None) -> Any:
    base = endpoint.url.removesuffix("/msi/token")
    response = requests.request(method, f"{base}/_control/{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def raw_token_request(endpoint: IdentityEndpoint, header: str | None, **params: str) -> requests.Response:
    headers = {"X-IDENTITY-HEADER": header} if header is not None else {}
    query = {"api-version": "2019-08-01", "resource": RESOURCE} | params
    return requests.get(endpoint.url, params=query, headers=headers, timeout=5)


@pytest.mark.usefixtures("app_service_env")
def test_system_assigned_credential_gets_a_cached_token_for_mde(endpoint: IdentityEndpoint) -> None:
    credential = ManagedIdentityCredential()

    first = credential.get_token(SCOPE)
    second = credential.get_token(SCOPE)

    token = claims(first.token)
    assert token["aud"] == RESOURCE
    assert token["appid"] == SYSTEM_ASSIGNED_CLIENT_ID
    assert token["roles"] == list(DEFAULT_ROLES)
    assert token["iss"] == f"https://sts.windows.net/{token['tid']}/"
    assert first.expires_on == token["exp"]
    assert second.token == first.token
    assert control(endpoint, "GET", "stats")["tokenRequests"] == 1


@pytest.mark.usefixtures("app_service_env")
def test_user_assigned_credential_gets_a_token_for_its_client_id(endpoint: IdentityEndpoint) -> None:
    credential = ManagedIdentityCredential(client_id=USER_ASSIGNED)

    token = claims(credential.get_token(SCOPE).token)

    assert token["aud"] == RESOURCE
    assert token["appid"] == token["azp"] == USER_ASSIGNED


@pytest.mark.usefixtures("app_service_env")
def test_credential_token_is_accepted_by_the_simulator() -> None:
    simulator = MdeSimulator(signing_secret=SECRET)
    url = simulator.start()
    try:
        token = ManagedIdentityCredential(client_id=USER_ASSIGNED).get_token(SCOPE).token
        response = requests.get(
            f"{url}/api/machineactions", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert response.status_code == 200
    finally:
        simulator.stop()


def test_response_has_the_app_service_fields(endpoint: IdentityEndpoint) -> None:
    body = raw_token_request(endpoint, endpoint.header_secret, client_id=USER_ASSIGNED).json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["expires_on"] == str(claims(body["access_token"])["exp"])
    assert (body["resource"], body["token_type"], body["client_id"]) == (RESOURCE, "Bearer", USER_ASSIGNED)


@pytest.mark.parametrize("header", [None, "wrong"])
def test_missing_or_wrong_identity_header_is_401(endpoint: IdentityEndpoint, header: str | None) -> None:
    response = raw_token_request(endpoint, header)
    assert response.status_code == 401
    assert response.json()["statusCode"] == 401
    assert control(endpoint, "GET", "stats")["tokenRequests"] == 0


@pytest.mark.parametrize(
    "params",
    [{"client_id": "00000000-0000-4000-8000-00000000dead"}, {"api-version": "2017-09-01"}, {"resource": ""}],
)
def test_unknown_client_or_bad_request_is_400(endpoint: IdentityEndpoint, params: dict[str, str]) -> None:
    assert raw_token_request(endpoint, endpoint.header_secret, **params).status_code == 400


def test_injected_failures_then_recovery(endpoint: IdentityEndpoint) -> None:
    control(endpoint, "POST", "fail", {"count": 2, "status": 503})

    assert raw_token_request(endpoint, endpoint.header_secret).status_code == 503
    assert raw_token_request(endpoint, endpoint.header_secret).status_code == 503
    assert raw_token_request(endpoint, endpoint.header_secret).status_code == 200
    assert control(endpoint, "GET", "stats")["tokenRequests"] == 1


def test_roles_change_at_runtime_and_reset_restores_them(endpoint: IdentityEndpoint) -> None:
    control(endpoint, "POST", "roles", {"roles": ["Machine.Read.All"]})
    token = raw_token_request(endpoint, endpoint.header_secret).json()["access_token"]
    assert claims(token)["roles"] == ["Machine.Read.All"]

    control(endpoint, "POST", "reset")
    token = raw_token_request(endpoint, endpoint.header_secret).json()["access_token"]
    assert claims(token)["roles"] == list(DEFAULT_ROLES)


def test_short_lifetime_token_expires() -> None:
    server = IdentityEndpoint(signing_secret=SECRET, lifetime_s=-1)
    server.start()
    try:
        token = raw_token_request(server, server.header_secret).json()["access_token"]
    finally:
        server.stop()
    with pytest.raises(TokenError) as caught:
        claims(token)
    assert caught.value.reason == "expired"
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == RESOURCE
