"""InitiateFunction called with the files in events/ against DynamoDB Local."""

from __future__ import annotations

import copy
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest

from calendar_connect.secret_hashes import hash_secret
from tests.support.lambda_runtime import EXAMPLE_API_KEY, invoke, json_body, load_event

pytestmark = pytest.mark.usefixtures("example_client")


def pending_items(dynamodb: Any) -> list[dict[str, Any]]:
    return dynamodb.client().scan(TableName="PendingAuthorizationsTable", ConsistentRead=True)["Items"]


def authorization_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, strict_parsing=True).items()}


def stored(dynamodb: Any, state: str) -> dict[str, Any]:
    item = dynamodb.client().get_item(
        TableName="PendingAuthorizationsTable", Key={"stateHash": {"S": hash_secret(state)}}, ConsistentRead=True
    )["Item"]
    return item


def test_wix_initiate_answers_a_google_authorization_url_and_stores_the_attempt(dynamodb):
    # Given the Wix event for Google; When it is invoked
    before = int(time.time())
    answer = invoke("InitiateFunction", load_event("initiate-wix.json"))
    # Then the answer has the URL, the provider's timeout and an ISO expiry
    assert answer["statusCode"] == 200
    body = json_body(answer)
    assert set(body) == {"oauthUrl", "timeoutSeconds", "expiresAt"}
    assert body["timeoutSeconds"] == 600
    assert body["expiresAt"].endswith("Z")
    url = urlsplit(body["oauthUrl"])
    assert (url.scheme, url.netloc, url.path) == ("https", "accounts.google.com", "/o/oauth2/v2/auth")
    params = authorization_params(body["oauthUrl"])
    assert params["response_type"] == "code"
    assert params["client_id"] == "1234567890-test.apps.googleusercontent.com"
    assert params["redirect_uri"] == "https://calendar-connect.example.org/oauth2/callback"
    assert params["scope"] == "openid email https://www.googleapis.com/auth/calendar"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["include_granted_scopes"] == "true"
    assert len(params["nonce"]) >= 16
    assert len(params["state"]) == 43  # 256 bits, base64url
    # And the attempt is stored under the state's hash, with TTL = creation + timeout_seconds
    item = stored(dynamodb, params["state"])
    assert int(item["expiresAt"]["N"]) == int(item["createdAt"]["N"]) + 600
    assert before <= int(item["createdAt"]["N"]) <= int(time.time())
    assert item["providerId"]["S"] == "google"
    assert item["clientId"]["S"] == "example01"
    assert item["scheduleId"]["S"] == "schedule-42"
    assert item["dialect"]["S"] == "wix"
    assert item["returnUrl"]["S"] == "https://booking.example.com/calendar/connected?tab=staff"
    assert item["nonce"]["S"] == params["nonce"]
    assert params["state"] not in json.dumps(item)  # only its hash is kept


def test_the_pkce_challenge_is_the_s256_of_the_stored_verifier(dynamodb):
    import base64
    import hashlib

    body = json_body(invoke("InitiateFunction", load_event("initiate-wix.json")))
    params = authorization_params(body["oauthUrl"])
    verifier = stored(dynamodb, params["state"])["codeVerifier"]["S"]
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert params["code_challenge"] == expected
    assert 43 <= len(verifier) <= 128


def test_states_are_distinct_per_attempt():
    urls = {json_body(invoke("InitiateFunction", load_event("initiate-wix.json")))["oauthUrl"] for _ in range(5)}
    states = {authorization_params(u)["state"] for u in urls}
    assert len(states) == 5


def test_teamup_json_initiate_for_microsoft_uses_the_owner_header(dynamodb):
    answer = invoke("InitiateFunction", load_event("initiate-teamup-json.json"))
    assert answer["statusCode"] == 200
    body = json_body(answer)
    assert set(body) == {"uri", "timeout_seconds"}
    assert body["timeout_seconds"] == 600
    url = urlsplit(body["uri"])
    assert (url.netloc, url.path) == ("login.microsoftonline.com", "/common/oauth2/v2.0/authorize")
    params = authorization_params(body["uri"])
    assert params["scope"] == "openid email profile offline_access User.Read Calendars.ReadWrite"
    assert params["prompt"] == "select_account"
    assert params["client_id"] == "6731de76-14a6-49ae-97bc-6eba6914391e"
    assert params["code_challenge_method"] == "S256"
    item = stored(dynamodb, params["state"])
    assert item["scheduleId"]["S"] == "subcalendar-7"
    assert item["dialect"]["S"] == "teamup"


def test_microsoft_tenant_is_configurable(monkeypatch):
    from calendar_connect import deployment

    monkeypatch.setenv("MICROSOFT_TENANT", "contoso.onmicrosoft.com")
    deployment.reset()
    body = json_body(invoke("InitiateFunction", load_event("initiate-teamup-json.json")))
    assert urlsplit(body["uri"]).path == "/contoso.onmicrosoft.com/oauth2/v2.0/authorize"


def test_teamup_form_body_with_token_scheme():
    answer = invoke("InitiateFunction", load_event("initiate-teamup-form.json"))
    assert answer["statusCode"] == 200
    assert urlsplit(json_body(answer)["uri"]).netloc == "accounts.google.com"


def test_teamup_multipart_body(dynamodb):
    answer = invoke("InitiateFunction", load_event("initiate-teamup-multipart.json"))
    assert answer["statusCode"] == 200, answer["body"]
    params = authorization_params(json_body(answer)["uri"])
    assert stored(dynamodb, params["state"])["returnUrl"]["S"] == "https://booking.example.com/calendar/teamup"


def test_teamup_xml_answer():
    answer = invoke("InitiateFunction", load_event("initiate-teamup-xml.json"))
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"].startswith("application/xml")
    root = ElementTree.fromstring(answer["body"])
    assert root.tag == "root"
    assert root.findtext("timeout_seconds") == "600"
    assert urlsplit(root.findtext("uri") or "").netloc == "accounts.google.com"


def test_providers_list():
    answer = invoke("InitiateFunction", load_event("providers-list.json"))
    assert answer["statusCode"] == 200
    providers = {p["providerId"]: p for p in json_body(answer)["providers"]}
    assert providers["google"] == {
        "providerId": "google",
        "name": "Google Calendar",
        "calendarType": "GOOGLE",
        "calendarSource": "GOOG",
        "connectMethods": ["OAUTH"],
        "timeoutSeconds": 600,
    }
    assert providers["microsoft"]["calendarSource"] == "MSFT"
    assert providers["apple"]["connectMethods"] == ["CREDENTIALS"]
    assert "generic" in providers  # added by PROVIDERS_FILE


def assert_error(answer: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    assert answer["statusCode"] == status, answer["body"]
    body = json_body(answer)
    assert isinstance(body["message"], str) and body["message"]
    assert body["details"]["applicationError"]["code"] == code
    assert isinstance(body["details"]["applicationError"]["description"], str)
    return body


def test_invalid_body_is_400_with_field_violations_and_writes_nothing(dynamodb):
    before = len(pending_items(dynamodb))
    body = assert_error(invoke("InitiateFunction", load_event("initiate-invalid-body.json")), 400, "INVALID_ARGUMENT")
    fields = {v["field"] for v in body["details"]["validationError"]["fieldViolations"]}
    assert fields == {"scheduleId", "color"}
    assert len(pending_items(dynamodb)) == before


@pytest.mark.parametrize(
    "redirect_url",
    [
        "javascript:alert(1)",
        "http://booking.example.com/calendar/x",
        "https://user:pw@booking.example.com/calendar/x",
        "https://booking.example.com/calendar/x\r\nSet-Cookie: a=b",
        "/calendar/relative",
        "https://booking.example.com/calendar/x#fragment",
    ],
)
def test_bad_redirect_urls_are_400(dynamodb, redirect_url):
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps({"providerId": "google", "scheduleId": "s1", "redirectUrl": redirect_url})
    before = len(pending_items(dynamodb))
    body = assert_error(invoke("InitiateFunction", event), 400, "INVALID_ARGUMENT")
    assert body["details"]["validationError"]["fieldViolations"][0]["field"] == "redirectUrl"
    assert len(pending_items(dynamodb)) == before


@pytest.mark.parametrize("body", ["not json", "[1, 2]", ""])
def test_malformed_bodies_are_400(body):
    event = load_event("initiate-wix.json")
    event["body"] = body
    assert_error(invoke("InitiateFunction", event), 400, "INVALID_ARGUMENT")


def test_missing_key_is_401(dynamodb):
    before = len(pending_items(dynamodb))
    assert_error(invoke("InitiateFunction", load_event("initiate-missing-key.json")), 401, "UNAUTHENTICATED")
    assert len(pending_items(dynamodb)) == before


@pytest.mark.parametrize(
    "header",
    [
        "Bearer cc_example01_" + "A" * 43,  # right client, wrong secret
        "Bearer cc_nosuchclient_" + "A" * 43,
        "Bearer not-a-key",
        "Basic " + EXAMPLE_API_KEY,
    ],
)
def test_wrong_keys_are_401(header):
    event = load_event("initiate-wix.json")
    event["headers"]["authorization"] = header
    assert_error(invoke("InitiateFunction", event), 401, "UNAUTHENTICATED")


def test_revoked_key_is_401(storage, api_client):
    client, key = api_client
    event = load_event("initiate-wix.json")
    event["headers"]["authorization"] = f"Bearer {key}"
    assert invoke("InitiateFunction", event)["statusCode"] == 200
    storage.api_clients.revoke(client.clientId)
    assert_error(invoke("InitiateFunction", event), 401, "UNAUTHENTICATED")


def test_return_url_outside_the_allowlist_is_403(dynamodb):
    before = len(pending_items(dynamodb))
    for url in (
        "https://evil.example.net/calendar/",
        "https://booking.example.com/other",
        "https://booking.example.com.evil.net/calendar/",
        "https://booking.example.com:8443/calendar/",
    ):
        event = load_event("initiate-wix.json")
        event["body"] = json.dumps({"providerId": "google", "scheduleId": "s1", "redirectUrl": url})
        assert_error(invoke("InitiateFunction", event), 403, "PERMISSION_DENIED")
    assert len(pending_items(dynamodb)) == before


def test_unknown_provider_is_404():
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps(
        {"providerId": "yahoo", "scheduleId": "s1", "redirectUrl": "https://booking.example.com/calendar/"}
    )
    assert_error(invoke("InitiateFunction", event), 404, "NOT_FOUND")
    teamup = load_event("initiate-teamup-json.json")
    teamup["body"] = json.dumps({"calendar_source": "YHOO", "redirect_uri": "https://booking.example.com/calendar/"})
    assert_error(invoke("InitiateFunction", teamup), 404, "NOT_FOUND")


def test_body_over_16_kib_is_413(dynamodb):
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps(
        {
            "providerId": "google",
            "scheduleId": "s1",
            "redirectUrl": "https://booking.example.com/calendar/",
            "pad": "x" * 17000,
        }
    )
    before = len(pending_items(dynamodb))
    assert_error(invoke("InitiateFunction", event), 413, "PAYLOAD_TOO_LARGE")
    assert len(pending_items(dynamodb)) == before


def test_credentials_only_provider_is_428(dynamodb):
    before = len(pending_items(dynamodb))
    body = assert_error(
        invoke("InitiateFunction", load_event("initiate-unsupported-provider.json")), 428, "NOT_SUPPORTED_BY_PROVIDER"
    )
    assert "OAuth" in body["message"]
    assert len(pending_items(dynamodb)) == before


def test_generic_provider_by_issuer_discovery_is_fetched_once(provider_server):
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps(
        {"providerId": "generic", "scheduleId": "s1", "redirectUrl": "https://booking.example.com/calendar/"}
    )
    first = json_body(invoke("InitiateFunction", copy.deepcopy(event)))
    invoke("InitiateFunction", copy.deepcopy(event))
    assert urlsplit(first["oauthUrl"]).path == "/generic/authorize"
    assert len(provider_server.requests_to("/generic/.well-known/openid-configuration")) == 1


def test_storage_down_is_503_with_retry_after(monkeypatch):
    from calendar_connect import deployment

    monkeypatch.setenv("DYNAMODB_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    deployment.reset()
    answer = invoke("InitiateFunction", load_event("initiate-wix.json"))
    assert_error(answer, 503, "UNAVAILABLE")
    assert int(answer["headers"]["Retry-After"]) > 0


def test_api_key_and_state_never_logged(log_lines):
    answer = invoke("InitiateFunction", load_event("initiate-wix.json"))
    state = authorization_params(json_body(answer)["oauthUrl"])["state"]
    invoke("InitiateFunction", load_event("initiate-missing-key.json"))
    logs = log_lines()
    assert "authorization started" in logs  # the logger did write
    for secret in (EXAMPLE_API_KEY, EXAMPLE_API_KEY.rsplit("_", 1)[1], state):
        assert secret not in logs
