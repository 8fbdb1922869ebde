import json

import pytest

from shared.errors import ConfigError
from shared.settings import effective_host_json, load_settings

CONN = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"


def env(**overrides: str) -> dict[str, str]:
    return {"CONTAINMENT_STORAGE": CONN, **overrides}


@pytest.mark.parametrize(
    ("cloud", "base", "scope"),
    [
        (
            "Commercial",
            "https://api.security.microsoft.com",
            "https://api.securitycenter.microsoft.com/.default",
        ),
        (
            "GCC",
            "https://api-gcc.securitycenter.microsoft.us",
            "https://api-gcc.securitycenter.microsoft.us/.default",
        ),
        (
            "GCCHigh",
            "https://api-gov.securitycenter.microsoft.us",
            "https://api-gov.securitycenter.microsoft.us/.default",
        ),
        (
            "DoD",
            "https://api-gov.securitycenter.microsoft.us",
            "https://api-gov.securitycenter.microsoft.us/.default",
        ),
    ],
)
def test_cloud_picks_api_base_and_token_scope(cloud: str, base: str, scope: str) -> None:
    settings = load_settings(env(MDE_CLOUD=cloud))
    assert (settings.mde_api_base_url, settings.mde_token_scope) == (base, scope)


def test_defaults_are_commercial_and_the_documented_queue_names() -> None:
    settings = load_settings(env())
    assert settings.mde_cloud == "Commercial"
    assert settings.mde_api_base_url == "https://api.security.microsoft.com"
    assert (settings.isolation_queue, settings.release_queue, settings.results_queue) == (
        "isolation-requests",
        "release-requests",
        "machine-action-results",
    )
    assert settings.azure_client_id is None
    assert settings.storage.connection_string == CONN


def test_base_url_and_scope_overrides_win_over_the_cloud() -> None:
    settings = load_settings(
        env(
            MDE_CLOUD="GCC",
            MDE_API_BASE_URL="https://eu.api.security.microsoft.com/",
            MDE_TOKEN_SCOPE="api://x/.default",
        )
    )
    assert settings.mde_api_base_url == "https://eu.api.security.microsoft.com"
    assert settings.mde_token_scope == "api://x/.default"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"MDE_CLOUD": "Azure"}, "MDE_CLOUD"),
        ({"MDE_API_BASE_URL": "http://api.security.microsoft.com"}, "MDE_API_BASE_URL"),
        ({"MDE_TOKEN_SCOPE": "Machine.Isolate"}, "MDE_TOKEN_SCOPE"),
        ({"AZURE_CLIENT_ID": "not-a-guid"}, "AZURE_CLIENT_ID"),
        ({"ISOLATION_QUEUE": "Isolation_Requests"}, "ISOLATION_QUEUE"),
        ({"RESULTS_QUEUE": "ab"}, "RESULTS_QUEUE"),
        ({"RELEASE_QUEUE": "a--b"}, "RELEASE_QUEUE"),
        ({"MDE_HTTP_READ_TIMEOUT": "soon"}, "MDE_HTTP_READ_TIMEOUT"),
        ({"MDE_HTTP_CONNECT_TIMEOUT": "0"}, "MDE_HTTP_CONNECT_TIMEOUT"),
        ({"MDE_BUDGET_SHARES": "0"}, "MDE_BUDGET_SHARES"),
    ],
)
def test_malformed_setting_fails_naming_it(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env(**overrides))


def test_missing_storage_connection_names_both_forms() -> None:
    with pytest.raises(ConfigError, match=r"CONTAINMENT_STORAGE.*CONTAINMENT_STORAGE__queueServiceUri"):
        load_settings({})


def test_identity_based_storage_connection() -> None:
    settings = load_settings(
        {
            "CONTAINMENT_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net/",
            "CONTAINMENT_STORAGE__credential": "managedidentity",
            "CONTAINMENT_STORAGE__clientId": "11111111-2222-3333-4444-555555555555",
            "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        }
    )
    assert settings.storage.connection_string is None
    assert settings.storage.queue_service_uri == "https://acct.queue.core.windows.net"
    assert settings.storage.client_id == "11111111-2222-3333-4444-555555555555"


def test_identity_based_storage_rejects_other_credential_kinds() -> None:
    with pytest.raises(ConfigError, match="CONTAINMENT_STORAGE__credential"):
        load_settings(
            {
                "CONTAINMENT_STORAGE__queueServiceUri": "https://a.queue.core.windows.net",
                "CONTAINMENT_STORAGE__credential": "connectionstring",
            }
        )


def test_http_loopback_is_allowed_for_the_dev_stack_only() -> None:
    assert (
        load_settings(env(MDE_API_BASE_URL="http://127.0.0.1:8081")).mde_api_base_url
        == "http://127.0.0.1:8081"
    )
    with pytest.raises(ConfigError):
        load_settings(env(MDE_API_BASE_URL="http://127.0.0.1.evil.example"))


def test_max_dequeue_count_comes_from_host_json_and_its_app_setting_override() -> None:
    host = json.loads(open("host.json").read())
    assert load_settings(env()).max_dequeue_count == host["extensions"]["queues"]["maxDequeueCount"]
    overridden = env(AzureFunctionsJobHost__extensions__queues__maxDequeueCount="2")
    assert load_settings(overridden).max_dequeue_count == 2
    assert effective_host_json(overridden)["extensions"]["queues"]["maxDequeueCount"] == "2"


JIRA = {"JIRA_BASE_URL": "https://contoso.atlassian.net", "JIRA_API_TOKEN": "t0ken"}
SERVICENOW = {
    "SERVICENOW_BASE_URL": "https://contoso.service-now.com",
    "SERVICENOW_USERNAME": "svc",
    "SERVICENOW_PASSWORD": "pa55",
}


def test_ticket_systems_are_off_until_their_base_url_is_set() -> None:
    settings = load_settings(env())
    assert settings.jira is None and settings.servicenow is None


def test_jira_cloud_with_email_and_data_center_with_a_personal_access_token() -> None:
    cloud = load_settings(env(**JIRA, JIRA_USER_EMAIL="bot@contoso.com")).jira
    assert cloud is not None and (cloud.api_version, cloud.user_email) == (3, "bot@contoso.com")
    data_center = load_settings(env(**JIRA, JIRA_API_VERSION="2")).jira
    assert data_center is not None and (data_center.api_version, data_center.user_email) == (2, None)
    assert "t0ken" not in repr(cloud) and "pa55" not in repr(load_settings(env(**SERVICENOW)))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({**JIRA, "JIRA_API_TOKEN": ""}, "JIRA_API_TOKEN"),
        ({**JIRA, "JIRA_API_VERSION": "1"}, "JIRA_API_VERSION"),
        ({**JIRA, "JIRA_BASE_URL": "http://jira.contoso.com"}, "JIRA_BASE_URL"),
        ({**SERVICENOW, "SERVICENOW_USERNAME": ""}, "SERVICENOW_USERNAME"),
        ({**SERVICENOW, "SERVICENOW_PASSWORD": ""}, "SERVICENOW_PASSWORD"),
    ],
)
def test_an_incomplete_ticket_system_fails_at_startup_naming_the_setting(
    settings: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env(**settings))


def test_an_unresolved_key_vault_reference_is_a_config_error_not_a_password() -> None:
    reference = "@Microsoft.KeyVault(VaultName=kv-tkt-abc;SecretName=servicenow-password)"
    with pytest.raises(ConfigError, match="SERVICENOW_PASSWORD is an unresolved Key Vault reference"):
        load_settings(env(**{**SERVICENOW, "SERVICENOW_PASSWORD": reference}))


def test_mde_budget_shares_default_to_one_process() -> None:
    assert load_settings(env()).mde_budget_shares == 1
    assert load_settings(env(MDE_BUDGET_SHARES="8")).mde_budget_shares == 8
