"""The connect flow end to end at the handler level: InitiateFunction, then CallbackFunction with the
provider's redirect, against DynamoDB Local and a real token endpoint on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from botocore.awsrequest import AWSResponse

from calendar_connect import connect_flow, deployment
from calendar_connect.aws_calls import MAX_ATTEMPTS
from calendar_connect.dialects import Dialect
from calendar_connect.records import PendingAuthorization
from calendar_connect.secret_hashes import hash_secret
from tests.conftest import GENERIC_CLIENT_ID, GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID
from tests.support.lambda_runtime import invoke, json_body, load_event
from tests.support.provider_server import (
    GOOGLE_ISSUER,
    MICROSOFT_TENANT,
    Answer,
    google_tokens,
    microsoft_tokens,
    unsigned_jwt,
)

pytestmark = pytest.mark.usefixtures("example_client")
RETURN_URL = "https://booking.example.com/calendar/connected?tab=staff"
TOKEN_PATH = {"google": "/google/token", "microsoft": "/microsoft/token", "generic": "/generic/token"}


@dataclass
class Attempt:
    provider: str
    dialect: Dialect
    state: str
    nonce: str | None
    params: dict[str, str]


def start(provider: str = "google", dialect: Dialect = Dialect.WIX, schedule: str = "schedule-42") -> Attempt:
    """Initiate through the API in the given dialect; the attempt's state and nonce from the answered URL."""
    if dialect is Dialect.WIX:
        event = load_event("initiate-wix.json")
        event["body"] = json.dumps({"providerId": provider, "scheduleId": schedule, "redirectUrl": RETURN_URL})
        url = json_body(invoke("InitiateFunction", event))["oauthUrl"]
    else:
        source = {"google": "GOOG", "microsoft": "MSFT"}[provider]
        event = load_event("initiate-teamup-json.json")
        event["body"] = json.dumps({"calendar_source": source, "redirect_uri": RETURN_URL})
        event["headers"]["teamup-provider-id"] = schedule
        url = json_body(invoke("InitiateFunction", event))["uri"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    # With browser binding the URL is the start hop, whose attempt is the state.
    return Attempt(provider, dialect, params.get("state") or params["attempt"], params.get("nonce"), params)


def callback(query: dict[str, str], cookies: list[str] | None = None) -> dict[str, Any]:
    event = load_event("callback-success.json")
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query
    if cookies:
        event["cookies"] = cookies
    return invoke("CallbackFunction", event)


def outcome(answer: dict[str, Any]) -> dict[str, str]:
    """The redirect's query, after checking it goes to the stored return URL with the browser headers."""
    assert answer["statusCode"] == 302, answer.get("body")
    headers = answer["headers"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    location = urlsplit(headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "booking.example.com", "/calendar/connected")
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query.pop("tab") == "staff"  # the return URL's own parameters are kept
    for leaked in ("code", "state", "access_token", "refresh_token"):
        assert leaked not in query
    return query


def failed(answer: dict[str, Any], dialect: Dialect) -> tuple[str, str]:
    query = outcome(answer)
    if dialect is Dialect.TEAMUP:
        assert query.pop("success") == "0"
    assert set(query) == {"error", "reason"}
    return query["error"], query["reason"]


def connected(answer: dict[str, Any], dialect: Dialect) -> str:
    query = outcome(answer)
    if dialect is Dialect.TEAMUP:
        assert query.pop("success") == "1"
    assert set(query) == {"connectionId"}
    return query["connectionId"]


def tokens_for(attempt: Attempt, **kwargs: Any) -> dict[str, Any]:
    if attempt.provider == "google":
        return google_tokens(GOOGLE_CLIENT_ID, attempt.nonce, **kwargs)
    return microsoft_tokens(MICROSOFT_CLIENT_ID, attempt.nonce, **kwargs)


def connections_in(dynamodb: Any) -> list[dict[str, Any]]:
    return dynamodb.client().scan(TableName="ConnectionsTable", ConsistentRead=True)["Items"]


BOTH = pytest.mark.parametrize(
    ("provider", "dialect"), [("google", Dialect.WIX), ("microsoft", Dialect.TEAMUP), ("google", Dialect.TEAMUP)]
)


@BOTH
def test_approved_connects_and_redirects_with_the_connection_id(provider, dialect, provider_server, dynamodb):
    # Given an attempt and a provider that grants everything
    attempt = start(provider, dialect)
    provider_server.script(TOKEN_PATH[provider], Answer(200, tokens_for(attempt)))
    # When the provider sends the browser back with a code
    answer = callback({"state": attempt.state, "code": "auth-code-1"})
    # Then the browser goes home with the connection id, and the connection is stored
    connection_id = connected(answer, dialect)
    item = dynamodb.client().get_item(
        TableName="ConnectionsTable", Key={"connectionId": {"S": connection_id}}, ConsistentRead=True
    )["Item"]
    assert item["status"]["S"] == "CONNECTED"
    assert item["providerId"]["S"] == provider
    if provider == "google":
        assert item["externalAccountId"]["S"] == "110169484474386276334"
        assert item["externalAccountEmail"]["S"] == "person@example.com"
    else:
        assert item["externalAccountId"]["S"] == f"{MICROSOFT_TENANT}:00000000-0000-0000-66f3-3332eca7ea81"
        assert item["externalAccountEmail"]["S"] == "person@contoso.com"
    # And the code was exchanged once, with PKCE, the registered redirect URI and client_secret_post
    (request,) = provider_server.requests_to(TOKEN_PATH[provider])
    assert request.form["grant_type"] == "authorization_code"
    assert request.form["code"] == "auth-code-1"
    assert request.form["redirect_uri"] == "https://calendar-connect.example.org/oauth2/callback"
    assert 43 <= len(request.form["code_verifier"]) <= 128
    assert request.form["client_secret"] == f"{provider}-test-client-secret"
    # And no plaintext token is in the stored item
    raw = json.dumps(item, default=lambda b: base64.b64encode(b).decode()) + repr(item)
    for token in ("ya29.a0-google-access-token", "1//0g-google-refresh-token", "EwBwA8l6BAAU", "M.C123_BAY"):
        assert token not in raw


def test_generic_oidc_provider_uses_discovery_and_client_secret_basic(provider_server):
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps({"providerId": "generic", "scheduleId": "s-generic", "redirectUrl": RETURN_URL})
    url = json_body(invoke("InitiateFunction", event))["oauthUrl"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    issuer = provider_server.generic_issuer()
    id_token = unsigned_jwt(
        {
            "iss": issuer,
            "aud": GENERIC_CLIENT_ID,
            "sub": "generic-user-1",
            "email": "g@example.com",
            "nonce": params["nonce"],
            "exp": int(time.time()) + 600,
        }
    )
    provider_server.script(
        "/generic/token",
        Answer(
            200,
            {
                "access_token": "generic-access",
                "refresh_token": "generic-refresh",
                "expires_in": 600,
                "token_type": "Bearer",
                "scope": "openid email calendar",
                "id_token": id_token,
            },
        ),
    )
    answer = callback({"state": params["state"], "code": "generic-code", "iss": issuer})
    assert connected(answer, Dialect.WIX)
    (request,) = provider_server.requests_to("/generic/token")
    expected = base64.b64encode(f"{GENERIC_CLIENT_ID}:generic-test-client-secret".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert "client_secret" not in request.form


def test_provider_without_id_token_is_identified_by_userinfo(provider_server):
    attempt = start("microsoft", Dialect.WIX)
    body = microsoft_tokens(MICROSOFT_CLIENT_ID, attempt.nonce)
    del body["id_token"]
    provider_server.script("/microsoft/token", Answer(200, body))
    provider_server.userinfo = {"id": "graph-user-7", "mail": "graph@contoso.com"}
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
    (me,) = provider_server.requests_to("/microsoft/me")
    assert me.headers["authorization"] == "Bearer EwBwA8l6BAAU-microsoft-access-token"


@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
@pytest.mark.parametrize(
    ("provider", "query", "expected"),
    [
        ("google", {"error": "access_denied"}, ("reject", "access_denied")),
        (
            "microsoft",
            {"error": "access_denied", "error_description": "AADSTS65004: User declined to consent"},
            ("reject", "access_denied"),
        ),
        (
            "microsoft",
            {"error": "access_denied", "error_description": "The user canceled"},
            ("reject", "access_denied"),
        ),
        (
            "microsoft",
            {"error": "consent_required", "error_description": "AADSTS65002: consent needed"},
            ("reject", "consent_required"),
        ),
        (
            "microsoft",
            {"error": "invalid_request", "error_description": "AADSTS500208: domain is not valid"},
            ("unsupported", "account_type_not_supported"),
        ),
        (
            "microsoft",
            {"error": "invalid_request", "error_description": "AADSTS50020: user account from identity"},
            ("unsupported", "account_type_not_supported"),
        ),
        (
            "microsoft",
            {"error": "invalid_request", "error_description": "AADSTS16000: account not in tenant"},
            ("unsupported", "account_type_not_supported"),
        ),
        (
            "microsoft",
            {"error": "access_denied", "error_description": "AADSTS90094: admin approval required"},
            ("unsupported", "admin_consent_required"),
        ),
        (
            "microsoft",
            {"error": "access_denied", "error_description": "AADSTS90095: admin consent workflow"},
            ("unsupported", "admin_consent_required"),
        ),
        (
            "microsoft",
            {"error": "consent_required", "error_description": "AADSTS65001: has not consented"},
            ("unsupported", "admin_consent_required"),
        ),
        (
            "microsoft",
            {"error": "access_denied", "error_description": "AADSTS53003: blocked by conditional access"},
            ("unsupported", "admin_consent_required"),
        ),
        ("google", {"error": "server_error"}, ("internal", "provider_error")),
        ("google", {}, ("internal", "provider_error")),  # neither code nor error
    ],
)
def test_provider_signals_map_to_the_contract(provider, query, expected, dialect, provider_server, dynamodb):
    attempt = start(provider, dialect)
    before = len(connections_in(dynamodb))
    assert failed(callback({"state": attempt.state, **query}), dialect) == expected
    assert provider_server.requests_to(TOKEN_PATH[provider]) == []  # nothing exchanged
    assert len(connections_in(dynamodb)) == before


@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
def test_narrowed_scope_is_unsupported_and_the_tokens_are_revoked(dialect, provider_server, dynamodb):
    attempt = start("google", dialect)
    narrowed = google_tokens(GOOGLE_CLIENT_ID, attempt.nonce, scope="openid email")
    provider_server.script("/google/token", Answer(200, narrowed))
    before = len(connections_in(dynamodb))
    assert failed(callback({"state": attempt.state, "code": "c"}), dialect) == ("unsupported", "scope_not_granted")
    (revocation,) = provider_server.requests_to("/google/revoke")
    assert revocation.form["token"] == "1//0g-google-refresh-token"
    assert len(connections_in(dynamodb)) == before


def test_microsoft_scope_with_the_graph_prefix_counts_as_granted(provider_server):
    attempt = start("microsoft", Dialect.WIX)
    body = tokens_for(
        attempt, scope="https://graph.microsoft.com/Calendars.ReadWrite https://graph.microsoft.com/User.Read"
    )
    provider_server.script("/microsoft/token", Answer(200, body))
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)


@pytest.mark.parametrize(("provider", "dialect"), [("google", Dialect.WIX), ("microsoft", Dialect.TEAMUP)])
def test_no_refresh_token_is_internal(provider, dialect, provider_server, dynamodb):
    attempt = start(provider, dialect)
    provider_server.script(TOKEN_PATH[provider], Answer(200, tokens_for(attempt, refresh=False)))
    before = len(connections_in(dynamodb))
    assert failed(callback({"state": attempt.state, "code": "c"}), dialect) == ("internal", "no_refresh_token")
    assert len(connections_in(dynamodb)) == before


@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
@pytest.mark.parametrize(
    "answer",
    [
        Answer(400, {"error": "invalid_grant", "error_description": "Bad Request"}),
        Answer(500, {"error": "server_error"}),
        Answer(500, "<html><body>Internal Server Error</body></html>", "text/html"),
        Answer(200, "<!doctype html><html>Sign in</html>", "text/html"),
        Answer(200, '{"access_token": "trunc', "application/json"),
        Answer(200, {"token_type": "Bearer"}),  # no access_token
        Answer(200, {"access_token": "a", "refresh_token": "r", "expires_in": "soon"}),
    ],
    ids=["invalid_grant", "500", "html-500", "html-200", "truncated", "incomplete", "malformed-expiry"],
)
def test_token_endpoint_failures_are_token_exchange_failed(answer, dialect, provider_server, dynamodb):
    attempt = start("google", dialect)
    provider_server.script("/google/token", answer)
    before = len(connections_in(dynamodb))
    assert failed(callback({"state": attempt.state, "code": "c"}), dialect) == ("internal", "token_exchange_failed")
    assert len(provider_server.requests_to("/google/token")) == 1  # never retried
    assert len(connections_in(dynamodb)) == before


def test_slow_token_endpoint_times_out(provider_server, monkeypatch):
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.5")
    deployment.reset()
    attempt = start("google", Dialect.WIX)
    released = threading.Event()

    def answer_once_released(received: Any) -> Answer:
        released.wait(60)  # the provider answers only after the callback has ended
        return Answer(200, tokens_for(attempt))

    provider_server.script("/google/token", answer_once_released)
    try:
        # The callback ends before the provider answers: it gave up at the read timeout
        outcome = failed(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
    finally:
        released.set()
    assert outcome == ("internal", "token_exchange_failed")


def seed(
    storage: Any,
    state: str,
    *,
    provider: str = "google",
    expires_in: int = 600,
    binding: bool = False,
    dialect: Dialect = Dialect.WIX,
) -> PendingAuthorization:
    """A pending attempt for one of the events/ files' fixed states."""
    now = int(time.time())
    pending = PendingAuthorization(
        stateHash=hash_secret(state),
        providerId=provider,
        clientId="example01",
        scheduleId="schedule-42",
        returnUrl=RETURN_URL,
        dialect=dialect,
        redirectUri="https://calendar-connect.example.org/oauth2/callback",
        codeVerifier="v" * 64,
        nonce="event-nonce",
        createdAt=now - 600 if expires_in < 0 else now,
        expiresAt=now + expires_in,
        requiresBrowserBinding=binding,
    )
    storage.pending.put_new(pending)
    return pending


def event_state(name: str) -> str:
    query = load_event(name)["queryStringParameters"]
    return query.get("state") or query["attempt"]


def test_event_success(storage, provider_server):
    seed(storage, event_state("callback-success.json"))
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, "event-nonce")))
    assert connected(invoke("CallbackFunction", load_event("callback-success.json")), Dialect.WIX)


def test_event_denied(storage):
    seed(storage, event_state("callback-denied.json"))
    answer = invoke("CallbackFunction", load_event("callback-denied.json"))
    assert failed(answer, Dialect.WIX) == ("reject", "access_denied")


def test_event_expired_even_before_dynamodb_deletes_it(storage, provider_server):
    seed(storage, event_state("callback-expired.json"), expires_in=-1)
    answer = invoke("CallbackFunction", load_event("callback-expired.json"))
    assert failed(answer, Dialect.WIX) == ("internal", "expired")
    assert provider_server.requests_to("/google/token") == []


def test_event_issuer_mismatch(storage, provider_server):
    seed(storage, event_state("callback-issuer-mismatch.json"))
    answer = invoke("CallbackFunction", load_event("callback-issuer-mismatch.json"))
    assert failed(answer, Dialect.WIX) == ("internal", "issuer_mismatch")
    assert provider_server.requests_to("/google/token") == []


def test_matching_issuer_is_accepted(provider_server):
    attempt = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert connected(callback({"state": attempt.state, "code": "c", "iss": GOOGLE_ISSUER}), Dialect.WIX)


@pytest.mark.parametrize("query", [{}, {"code": "c"}, {"state": ""}])
def test_missing_state_is_a_400_page_without_redirect(query):
    answer = callback(query)
    assert answer["statusCode"] == 400
    assert "Location" not in answer["headers"]
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert answer["headers"]["Cache-Control"] == "no-store"


def test_event_unknown_state_is_a_400_page():
    answer = invoke("CallbackFunction", load_event("callback-unknown-state.json"))
    assert answer["statusCode"] == 400
    assert "Location" not in answer["headers"]
    assert "<script" not in answer["body"]


@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
def test_a_repeated_callback_replays_the_first_outcome_without_a_second_exchange(dialect, provider_server):
    attempt = start("google", dialect)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    first = callback({"state": attempt.state, "code": "c"})
    second = callback({"state": attempt.state, "code": "c"})
    assert second["headers"]["Location"] == first["headers"]["Location"]
    assert len(provider_server.requests_to("/google/token")) == 1


def test_a_repeated_failed_callback_replays_the_failure(provider_server):
    attempt = start("google", Dialect.WIX)
    first = callback({"state": attempt.state, "error": "access_denied"})
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    second = callback({"state": attempt.state, "code": "late-code"})
    assert second["headers"]["Location"] == first["headers"]["Location"]
    assert provider_server.requests_to("/google/token") == []


def test_twenty_concurrent_callbacks_make_one_exchange_and_one_connection(provider_server, dynamodb):
    attempt = start("google", Dialect.WIX, schedule="concurrent-schedule")
    # The exchange takes a while, so the others arrive while it is under way.
    provider_server.script("/google/token", Answer(200, tokens_for(attempt), delay=0.3))
    barrier = threading.Barrier(20)
    answers: list[dict[str, Any]] = []

    def one() -> None:
        barrier.wait()
        answers.append(callback({"state": attempt.state, "code": "same-code"}))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 20
    assert len(provider_server.requests_to("/google/token")) == 1
    ids = {connected(answer, Dialect.WIX) for answer in answers}
    assert len(ids) == 1
    stored = [i for i in connections_in(dynamodb) if i["scheduleId"]["S"] == "concurrent-schedule"]
    assert len(stored) == 1


def test_reconnecting_the_same_account_keeps_the_connection_id(provider_server, dynamodb):
    first = start("google", Dialect.WIX, schedule="reconnect-schedule")
    provider_server.script("/google/token", Answer(200, tokens_for(first)))
    first_id = connected(callback({"state": first.state, "code": "c1"}), Dialect.WIX)
    second = start("google", Dialect.WIX, schedule="reconnect-schedule")
    provider_server.script("/google/token", Answer(200, tokens_for(second)))
    assert connected(callback({"state": second.state, "code": "c2"}), Dialect.WIX) == first_id
    stored = [i for i in connections_in(dynamodb) if i["scheduleId"]["S"] == "reconnect-schedule"]
    assert len(stored) == 1
    assert int(stored[0]["version"]["N"]) == 2
    # Another account on the same schedule is another connection
    third = start("google", Dialect.WIX, schedule="reconnect-schedule")
    provider_server.script("/google/token", Answer(200, tokens_for(third, sub="another-google-account")))
    assert connected(callback({"state": third.state, "code": "c3"}), Dialect.WIX) != first_id


def test_stored_tokens_are_bound_to_their_connection(provider_server, dynamodb):
    from calendar_connect.token_cipher import DecryptionError

    ids = []
    for schedule in ("bound-a", "bound-b"):
        attempt = start("google", Dialect.WIX, schedule=schedule)
        provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
        ids.append(connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX))
    cipher = deployment.current().cipher
    items = {i["connectionId"]["S"]: i for i in connections_in(dynamodb)}
    blob_a = items[ids[0]]["tokens"]["B"]
    assert cipher.decrypt(ids[0], blob_a).refresh_token == "1//0g-google-refresh-token"
    with pytest.raises(DecryptionError):
        cipher.decrypt(ids[1], blob_a)  # moved onto another connection, it does not decrypt


def test_storage_failure_while_storing_the_connection(provider_server, monkeypatch):
    attempt = start("google", Dialect.WIX)
    monkeypatch.setenv("CONNECTIONS_TABLE", "NoSuchTable")  # DynamoDB refuses the write
    deployment.reset()
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert failed(callback({"state": attempt.state, "code": "c"}), Dialect.WIX) == ("internal", "storage_unavailable")


def storage_down_page(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 503
    assert int(answer["headers"]["Retry-After"]) > 0
    assert "Location" not in answer["headers"]


def test_storage_unreachable_at_the_claim_is_a_503_page(monkeypatch):
    attempt = start("google", Dialect.WIX)
    monkeypatch.setenv("DYNAMODB_ENDPOINT", "http://127.0.0.1:9")
    deployment.reset()
    storage_down_page(callback({"state": attempt.state, "code": "c"}))


# --- the claim is the callback's only use of its attempt: one conditional UpdateItem, no read before it ----------


@dataclass
class DynamoDBCall:
    operation: str
    table: str
    params: dict[str, Any]
    consumed: dict[str, Any] = field(default_factory=dict)


@contextmanager
def dynamodb_calls() -> Iterator[list[DynamoDBCall]]:
    """Every call the deployment's DynamoDB client makes meanwhile, with the capacity DynamoDB says it consumed
    (asked for and read through botocore's events on that one client, as bench/capacity.py does)."""
    client = deployment.current().storage.client
    calls: list[DynamoDBCall] = []

    def ask(params: dict[str, Any], model: Any, **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"
        calls.append(DynamoDBCall(model.name, params.get("TableName", "?"), dict(params)))

    def record(parsed: dict[str, Any], **_: Any) -> None:
        calls[-1].consumed = parsed.get("ConsumedCapacity") or {}

    client.meta.events.register("provide-client-params.dynamodb", ask, unique_id="test-calls-ask")
    client.meta.events.register("after-call.dynamodb", record, unique_id="test-calls-record")
    try:
        yield calls
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb", unique_id="test-calls-ask")
        client.meta.events.unregister("after-call.dynamodb", unique_id="test-calls-record")


def operations(calls: list[DynamoDBCall]) -> list[tuple[str, str]]:
    return [(call.operation, call.table) for call in calls]


CLAIM = ("UpdateItem", "PendingAuthorizationsTable")


def pending_item(dynamodb: Any, state: str) -> dict[str, Any] | None:
    key = {"stateHash": {"S": hash_secret(state)}}
    return dynamodb.client().get_item(TableName="PendingAuthorizationsTable", Key=key, ConsistentRead=True).get("Item")


def set_status(dynamodb: Any, state: str, status: str, outcome: dict[str, str] | None = None) -> None:
    values: dict[str, Any] = {":s": {"S": status}}
    expression = "SET #s = :s"
    if outcome is not None:
        values[":o"] = {"M": {k: {"S": v} for k, v in outcome.items()}}
        expression += ", outcome = :o"
    dynamodb.client().update_item(
        TableName="PendingAuthorizationsTable",
        Key={"stateHash": {"S": hash_secret(state)}},
        UpdateExpression=expression,
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues=values,
    )


def test_a_successful_callback_claims_its_attempt_with_one_update_without_reading_it(provider_server, dynamodb):
    # Given an attempt
    attempt = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    # When the provider sends the browser back with a code
    with dynamodb_calls() as calls:
        connection_id = connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
    # Then DynamoDB saw the claim (which answers the attempt), half a read unit for whether its API client is
    # still active (before the code is redeemed), the connection, and the outcome; the attempt is never read
    assert operations(calls) == [CLAIM, ("GetItem", "ApiClientsTable"), ("UpdateItem", "ConnectionsTable"), CLAIM]
    assert calls[1].consumed["CapacityUnits"] == 0.5
    claim = calls[0]
    assert claim.params["ConditionExpression"] == (
        "#s = :pending AND expiresAt > :now AND requiresBrowserBinding = :unbound"  # no cookie: no binding
    )
    assert claim.params["ReturnValues"] == "ALL_NEW"
    assert claim.params["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert claim.consumed["TableName"] == "PendingAuthorizationsTable"
    assert claim.consumed["CapacityUnits"] == 1.0  # one write unit; UpdateItem consumes no read unit
    # And the attempt ends DONE with the outcome a repeated callback replays
    item = pending_item(dynamodb, attempt.state)
    assert item is not None
    assert item["status"]["S"] == "DONE"
    assert item["outcome"]["M"]["connectionId"]["S"] == connection_id


def test_an_unknown_state_is_one_refused_claim_that_writes_nothing(dynamodb):
    state = event_state("callback-unknown-state.json")
    with dynamodb_calls() as calls:
        answer = invoke("CallbackFunction", load_event("callback-unknown-state.json"))
    assert answer["statusCode"] == 400
    assert "Location" not in answer["headers"]
    assert operations(calls) == [CLAIM]
    assert pending_item(dynamodb, state) is None  # the refused update did not create an item


@pytest.mark.parametrize(
    ("status", "outcome"), [("PENDING", None), ("CONSUMED", None), ("DONE", {"connectionId": "conn-earlier"})]
)
def test_an_expired_attempt_answers_expired_before_anything_else(status, outcome, storage, dynamodb, provider_server):
    # Given an attempt past its expiry that DynamoDB has not deleted yet, in any status
    state = f"expired-{status.lower()}-" + "x" * 32
    seed(storage, state, expires_in=-1)
    if status != "PENDING":
        set_status(dynamodb, state, status, outcome)
    # When its callback arrives
    with dynamodb_calls() as calls:
        answer = callback({"state": state, "code": "c"})
    # Then it is expired, even when an earlier outcome exists, from the refused claim alone
    assert failed(answer, Dialect.WIX) == ("internal", "expired")
    assert operations(calls) == [CLAIM]
    assert provider_server.requests_to("/google/token") == []
    item = pending_item(dynamodb, state)
    assert item is not None and item["status"]["S"] == status  # left as it was


def test_an_attempt_expiring_this_second_is_expired(storage, dynamodb, provider_server):
    # The claim's condition (expiresAt > now) and the flow's check (now >= expiresAt) agree at the boundary.
    state = "expiring-now-" + "x" * 32
    pending = seed(storage, state)
    answer = connect_flow.finish_authorization(
        deployment.current(), {"state": state, "code": "c"}, {}, now=pending.expiresAt
    )
    assert isinstance(answer, connect_flow.ReturnToWebsite)
    assert answer.outcome["reason"] == "expired"
    item = pending_item(dynamodb, state)
    assert item is not None and item["status"]["S"] == "PENDING"
    assert provider_server.requests_to("/google/token") == []


def test_a_repeated_callback_replays_from_its_refused_claim_alone(provider_server):
    attempt = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    first = callback({"state": attempt.state, "code": "c"})
    with dynamodb_calls() as calls:
        second = callback({"state": attempt.state, "code": "c"})
    assert second["headers"]["Location"] == first["headers"]["Location"]
    assert operations(calls) == [CLAIM]  # the old item holds the outcome: no read, no wait
    assert len(provider_server.requests_to("/google/token")) == 1


def test_a_callback_while_the_first_is_under_way_waits_for_its_outcome(storage, dynamodb, provider_server):
    # Given an attempt the first callback has claimed but not finished
    state = "under-way-" + "x" * 32
    seed(storage, state)
    set_status(dynamodb, state, "CONSUMED")
    client = deployment.current().storage.client

    def first_callback_finishes(**_: Any) -> None:
        set_status(dynamodb, state, "DONE", {"connectionId": "conn-of-the-first"})

    # When a second callback arrives, and the first one records its outcome while the second polls for it
    client.meta.events.register("before-call.dynamodb.GetItem", first_callback_finishes, unique_id="test-first")
    try:
        with dynamodb_calls() as calls:
            answer = callback({"state": state, "code": "c"})
    finally:
        client.meta.events.unregister("before-call.dynamodb.GetItem", unique_id="test-first")
    # Then the second goes home with the first one's outcome, found by polling after its refused claim
    assert connected(answer, Dialect.WIX) == "conn-of-the-first"
    assert operations(calls) == [CLAIM, ("GetItem", "PendingAuthorizationsTable")]
    assert provider_server.requests_to("/google/token") == []


def test_storage_failing_the_claim_is_a_503_page_and_the_attempt_stays_usable(provider_server, dynamodb):
    # Given an attempt, and DynamoDB answering the claim with a server error
    attempt = start("google", Dialect.WIX)
    client = deployment.current().storage.client

    def server_error(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Error": {"Code": "InternalServerError", "Message": "injected"}, "ResponseMetadata": {}}
        return AWSResponse("http://dynamodb.invalid/", 500, {}, None), error

    client.meta.events.register("before-call.dynamodb.UpdateItem", server_error, unique_id="test-claim-fails")
    try:
        with dynamodb_calls() as calls:
            answer = callback({"state": attempt.state, "code": "c"})
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", unique_id="test-claim-fails")
    # Then the browser gets the 503 page: nothing was read, so there is no return URL it may be sent to
    storage_down_page(answer)
    assert operations(calls) == [CLAIM] * MAX_ATTEMPTS  # a 500 is transient: retried within the deadline, no read
    assert provider_server.requests_to("/google/token") == []
    # And the attempt was not used: the same callback connects once DynamoDB answers again
    item = pending_item(dynamodb, attempt.state)
    assert item is not None and item["status"]["S"] == "PENDING"
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)


def test_no_token_code_or_state_in_any_log_line(provider_server, log_lines):
    attempt = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    callback({"state": attempt.state, "code": "secret-auth-code-123"})
    failing = start("google", Dialect.TEAMUP)
    provider_server.script("/google/token", Answer(400, {"error": "invalid_grant"}))
    callback({"state": failing.state, "code": "secret-auth-code-456"})
    logs = log_lines()
    assert "authorization finished" in logs
    for secret in (
        attempt.state,
        failing.state,
        "secret-auth-code-123",
        "secret-auth-code-456",
        "ya29.a0-google-access-token",
        "1//0g-google-refresh-token",
        "google-test-client-secret",
        attempt.params.get("code_challenge", ""),
    ):
        assert secret not in logs
