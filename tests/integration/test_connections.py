"""The connection routes of InitiateFunction, with the files in events/, against DynamoDB Local and a real
token/revocation server on 127.0.0.1."""

from __future__ import annotations

import base64
import calendar
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from calendar_connect import connections, deployment
from calendar_connect.connect_flow import connected_record, connection_id_for
from calendar_connect.dal import InvalidCursor
from calendar_connect.deployment import Deployment
from calendar_connect.records import ConnectionStatus, TokenSet
from calendar_connect.timestamps import iso
from local.template import ROOT
from tests.conftest import GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_CLIENT_ID, invoke, json_body, load_event
from tests.support.provider_server import Answer, ProviderServer, google_tokens

EVENT_CONNECTION_ID = "3f1c1ad6-52b1-5d53-9e65-0c0f3e1b7a11"  # the connection the event files name
CONNECTION_FIELDS = {
    "connectionId",
    "providerId",
    "calendarType",
    "scheduleId",
    "externalAccountId",
    "externalAccountEmail",
    "scopesGranted",
    "status",
    "createdAt",
    "updatedAt",
}


# --- seeding connections through the real store and cipher ---------------------------------------------------


@dataclass
class Seeded:
    connection_id: str
    tokens: TokenSet


def seed(
    client_id: str,
    *,
    provider_id: str = "google",
    schedule_id: str = "schedule-42",
    account_id: str | None = None,
    connection_id: str | None = None,
    expires_in: int = 3600,
    refresh_token: str | None = None,
    keepalive_due_at: int | None = None,
) -> Seeded:
    """A CONNECTED connection written as the callback writes one: tokens encrypted, bound to the id."""
    here = deployment.current()
    provider = here.providers[provider_id]
    account_id = account_id or f"account-{secrets.token_hex(6)}"
    connection_id = connection_id or connection_id_for(client_id, provider_id, schedule_id, account_id)
    now = int(time.time())
    tokens = TokenSet(
        access_token=f"at-{secrets.token_urlsafe(18)}",
        refresh_token=refresh_token or f"rt-{secrets.token_urlsafe(18)}",
        expires_at=now + expires_in,
    )
    account = (account_id, "person@example.com")
    here.storage.connections.upsert_connected(
        connected_record(
            here,
            connection_id,
            client_id,
            provider,
            schedule_id,
            account,
            list(provider.scopes),
            tokens,
            now,
            keepalive_due_at,
        )
    )
    return Seeded(connection_id, tokens)


def seeded_schedule(client_id: str, count: int) -> str:
    """A fresh schedule with `count` of the client's connections on it."""
    schedule = f"schedule-{secrets.token_hex(4)}"
    for _ in range(count):
        seed(client_id, schedule_id=schedule)
    return schedule


def stored_tokens(connection_id: str) -> TokenSet | None:
    record = deployment.current().storage.connections.get(connection_id)
    assert record is not None
    return deployment.current().cipher.decrypt(connection_id, record.tokens) if record.tokens else None


def raw_item(dynamodb: Any, environment: dict[str, str], connection_id: str) -> dict[str, Any]:
    return dynamodb.client().get_item(
        TableName=environment["CONNECTIONS_TABLE"], Key={"connectionId": {"S": connection_id}}, ConsistentRead=True
    )["Item"]


# --- calling the routes with the event files ----------------------------------------------------------------


def connection_event(
    name: str,
    api_key: str | None = EXAMPLE_API_KEY,
    *,
    connection_id: str | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event file, aimed at another key, connection or query the way API Gateway would send it."""
    event = load_event(name)
    if api_key is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = f"Bearer {api_key}"
    if connection_id is not None:
        event["rawPath"] = event["rawPath"].replace(EVENT_CONNECTION_ID, connection_id)
        event["requestContext"]["http"]["path"] = event["rawPath"]
        event["pathParameters"] = {"connectionId": connection_id}
    if query is not None:
        event["rawQueryString"] = urlencode(query)
        event["queryStringParameters"] = query
        if not query:
            del event["queryStringParameters"]
    return event


def call(name: str, api_key: str | None = EXAMPLE_API_KEY, **aim: Any) -> dict[str, Any]:
    return invoke("InitiateFunction", connection_event(name, api_key, **aim))


def get(api_key: str, connection_id: str) -> dict[str, Any]:
    return call("connection-get.json", api_key, connection_id=connection_id)


def delete(api_key: str, connection_id: str) -> dict[str, Any]:
    return call("connection-delete.json", api_key, connection_id=connection_id)


def access_token(api_key: str, connection_id: str) -> dict[str, Any]:
    return call("connection-access-token.json", api_key, connection_id=connection_id)


def list_page(api_key: str, schedule_id: str, cursor: str | None = None) -> dict[str, Any]:
    query = {"scheduleId": schedule_id} | ({"cursor": cursor} if cursor is not None else {})
    return call("connections-list.json", api_key, query=query)


def error_code(answer: dict[str, Any]) -> tuple[int, str]:
    return answer["statusCode"], json_body(answer)["details"]["applicationError"]["code"]


def refreshed(access: str, *, refresh: str | None = None, expires_in: int = 3599) -> Answer:
    body: dict[str, Any] = {"access_token": access, "expires_in": expires_in, "token_type": "Bearer"}
    if refresh:
        body["refresh_token"] = refresh
    return Answer(200, body)


def secrets_of(*seeded: Seeded) -> list[str]:
    return [t for s in seeded for t in (s.tokens.access_token, s.tokens.refresh_token) if t]


@pytest.fixture
def event_connection(example_client: Any) -> Seeded:
    """The connection the event files name, CONNECTED with fresh tokens (a reconnect resets it)."""
    return seed(EXAMPLE_CLIENT_ID, connection_id=EVENT_CONNECTION_ID, account_id="110169484474386276334")


@pytest.fixture
def other_client(storage: Any) -> tuple[Any, str]:
    from calendar_connect.api_clients import register_client

    return register_client(storage.api_clients, "another site", ["https://elsewhere.example.net/"])


# --- GET one, list ------------------------------------------------------------------------------------------


def test_get_answers_the_connection_without_its_tokens(event_connection):
    # Given the connection the event file names; When it is read with the event file as is
    answer = invoke("InitiateFunction", load_event("connection-get.json"))
    # Then the contract's Connection comes back, and no token
    assert answer["statusCode"] == 200
    connection = json_body(answer)["connection"]
    assert set(connection) == CONNECTION_FIELDS
    assert connection["connectionId"] == EVENT_CONNECTION_ID
    assert connection["providerId"] == "google"
    assert connection["calendarType"] == "GOOGLE"
    assert connection["status"] == "CONNECTED"
    assert connection["externalAccountId"] == "110169484474386276334"
    assert connection["createdAt"].endswith("Z") and connection["updatedAt"].endswith("Z")
    assert not any(token in answer["body"] for token in secrets_of(event_connection))
    assert "token" not in answer["body"].lower()


def test_the_list_event_file_lists_the_callers_connections_on_the_schedule(example_client):
    # Given two connections of the event files' client on a schedule of its own
    schedule = f"events-{secrets.token_hex(4)}"
    first, second = seed(EXAMPLE_CLIENT_ID, schedule_id=schedule), seed(EXAMPLE_CLIENT_ID, schedule_id=schedule)
    # When the list event file asks for that schedule
    answer = call("connections-list.json", query={"scheduleId": schedule})
    # Then both are listed, with their fields and no tokens, on one last page
    assert answer["statusCode"] == 200
    body = json_body(answer)
    assert {c["connectionId"] for c in body["connections"]} == {first.connection_id, second.connection_id}
    assert all(set(c) == CONNECTION_FIELDS for c in body["connections"])
    assert body["nextCursor"] is None
    assert not any(token in answer["body"] for token in secrets_of(first, second))


def test_the_list_pages_with_a_cursor_through_only_the_callers_connections(api_client, other_client, monkeypatch):
    # Given pages of 2, five connections of the caller on a schedule, and others around them
    monkeypatch.setenv("CONNECTIONS_PAGE_SIZE", "2")
    deployment.reset()
    client, key = api_client
    schedule = f"schedule-{secrets.token_hex(4)}"
    mine = {seed(client.clientId, schedule_id=schedule).connection_id for _ in range(5)}
    seed(client.clientId, schedule_id=f"{schedule}-other")
    seed(other_client[0].clientId, schedule_id=schedule)
    # When the caller pages through the schedule
    pages: list[list[str]] = []
    cursor = None
    while True:
        answer = list_page(key, schedule, cursor)
        assert answer["statusCode"] == 200
        body = json_body(answer)
        pages.append([c["connectionId"] for c in body["connections"]])
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "the cursor does not advance"
    # Then it sees exactly its five, each once, two per page, and the last page says so
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(c for p in pages for c in p) == sorted(mine)


def test_a_full_last_page_has_no_next_cursor(api_client, monkeypatch):
    # Given pages of 2 and exactly two connections on the schedule
    monkeypatch.setenv("CONNECTIONS_PAGE_SIZE", "2")
    deployment.reset()
    client, key = api_client
    schedule = seeded_schedule(client.clientId, 2)
    # When it is listed; Then both come on the one page, and there is no next page to ask for
    body = json_body(list_page(key, schedule))
    assert len(body["connections"]) == 2
    assert body["nextCursor"] is None


def test_an_empty_schedule_lists_nothing(api_client):
    answer = list_page(api_client[1], "nobody-here")
    assert answer["statusCode"] == 200
    assert json_body(answer) == {"connections": [], "nextCursor": None}


def test_another_clients_connection_is_as_unknown_as_one_that_does_not_exist(api_client, other_client, provider_server):
    # Given a connection of one client, and another client
    client, _ = api_client
    theirs = seed(client.clientId, expires_in=60)
    _, intruder_key = other_client
    unknown = "00000000-0000-5000-8000-000000000000"
    # When the other client reads, deletes or asks a token for it, or for an unknown id
    for route in (get, delete, access_token):
        foreign, missing = route(intruder_key, theirs.connection_id), route(intruder_key, unknown)
        # Then both answer the same 404, word for word
        assert foreign["statusCode"] == missing["statusCode"] == 404
        assert json_body(foreign) == json_body(missing)
        assert json_body(foreign)["details"]["applicationError"]["code"] == "NOT_FOUND"
    # And its listing of the same schedule does not show it
    assert json_body(list_page(intruder_key, "schedule-42"))["connections"] == []
    # And nothing happened to the connection: no revocation, no refresh, still CONNECTED with its tokens
    assert provider_server.received == []
    assert stored_tokens(theirs.connection_id) == theirs.tokens
    assert json_body(get(api_client[1], theirs.connection_id))["connection"]["status"] == "CONNECTED"


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"connectionId": {"S": "x"}}').decode(),
        base64.urlsafe_b64encode(
            b'{"connectionId": {"N": "1"}, "scheduleId": {"S": "s"}, "listKey": {"S": "k"}}'
        ).decode(),
        "é",
    ],
)
def test_a_cursor_this_api_did_not_return_is_400(api_client, cursor):
    answer = list_page(api_client[1], "schedule-42", cursor)
    assert error_code(answer) == (400, "INVALID_ARGUMENT")
    violation = json_body(answer)["details"]["validationError"]["fieldViolations"][0]
    assert violation == {"field": "cursor", "description": "not a cursor this API returned"}


def test_a_cursor_of_another_listing_is_400(api_client, other_client, monkeypatch):
    # Given a real cursor of one client's listing of one schedule
    monkeypatch.setenv("CONNECTIONS_PAGE_SIZE", "1")
    deployment.reset()
    client, key = api_client
    schedule = seeded_schedule(client.clientId, 2)
    cursor = json_body(list_page(key, schedule))["nextCursor"]
    assert cursor
    # When it is used for another schedule, or by another client; Then 400 on the cursor
    for answer in (list_page(key, "another-schedule", cursor), list_page(other_client[1], schedule, cursor)):
        assert error_code(answer) == (400, "INVALID_ARGUMENT")
        violation = json_body(answer)["details"]["validationError"]["fieldViolations"][0]
        assert violation == {"field": "cursor", "description": "belongs to another listing"}


def test_the_store_refuses_a_cursor_of_another_clients_listing_itself(api_client, other_client, storage):
    # Given a cursor the store handed out for one client's listing of one schedule
    client, _ = api_client
    schedule = seeded_schedule(client.clientId, 2)
    first, cursor = storage.connections.list_for_schedule(client.clientId, schedule, 1, None)
    assert len(first) == 1 and isinstance(cursor, str)
    # When another client's listing (or another schedule's) is asked to continue from it; Then the store refuses it
    for intruder, listing in ((other_client[0].clientId, schedule), (client.clientId, "another-schedule")):
        with pytest.raises(InvalidCursor, match=r"^belongs to another listing$"):
            storage.connections.list_for_schedule(intruder, listing, 1, cursor)
    # And the cursor still continues the listing it came from
    rest, after = storage.connections.list_for_schedule(client.clientId, schedule, 1, cursor)
    assert [r.connectionId for r in rest] != [r.connectionId for r in first] and len(rest) == 1 and after is None


def test_the_store_refuses_a_forged_cursor_naming_another_clients_keys(api_client, other_client, storage):
    # Given a cursor of the right shape, forged by one client to start inside another client's listing
    victim = other_client[0].clientId
    forged = {"connectionId": {"S": "x"}, "scheduleId": {"S": "schedule-42"}, "listKey": {"S": f"{victim}#x"}}
    cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
    # When the forger's listing is asked to continue from it; Then the store refuses it before any query
    with pytest.raises(InvalidCursor, match=r"^belongs to another listing$"):
        storage.connections.list_for_schedule(api_client[0].clientId, "schedule-42", 10, cursor)
    # And a string that is no cursor at all is refused the same way, with its own reason
    with pytest.raises(InvalidCursor, match=r"^not a cursor this API returned$"):
        storage.connections.list_for_schedule(api_client[0].clientId, "schedule-42", 10, "not-a-cursor")


def test_a_forged_cursor_within_the_callers_listing_is_400_not_a_storage_failure(api_client):
    # Given a cursor of the right shape naming the caller's listing, but no key DynamoDB ever returned
    client, key = api_client
    forged = {
        "connectionId": {"S": "forged"},
        "scheduleId": {"S": "schedule-42"},
        "listKey": {"S": f"{client.clientId}#x"},
    }
    cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
    # When it is used; Then the answer is a listing or a 400, never a 503 or 500
    answer = list_page(key, "schedule-42", cursor)
    assert answer["statusCode"] in (200, 400)


def test_listing_without_a_schedule_is_400(api_client):
    answer = call("connections-list.json", api_client[1], query={})
    assert error_code(answer) == (400, "INVALID_ARGUMENT")
    assert json_body(answer)["details"]["validationError"]["fieldViolations"][0]["field"] == "scheduleId"


def test_an_overlong_connection_id_is_404_not_a_storage_failure(api_client):
    answer = get(api_client[1], "a" * 3000)
    assert error_code(answer) == (404, "NOT_FOUND")


# --- DELETE ------------------------------------------------------------------------------------------------


def test_delete_revokes_at_google_erases_the_tokens_and_answers_the_same_twice(
    event_connection, provider_server, dynamodb, environment
):
    # Given a Google connection (the event file's)
    # When the delete event file is invoked
    first = invoke("InitiateFunction", load_event("connection-delete.json"))
    # Then the refresh token was revoked at Google's revocation endpoint
    assert first["statusCode"] == 200
    body = json_body(first)
    assert body["revokedAtProvider"] is True
    assert body["connection"]["status"] == "DISCONNECTED"
    assert set(body["connection"]) == CONNECTION_FIELDS
    revocations = provider_server.requests_to("/google/revoke")
    assert len(revocations) == 1
    assert revocations[0].form["token"] == event_connection.tokens.refresh_token
    assert revocations[0].form["token_type_hint"] == "refresh_token"
    # And the stored item keeps the connection but no token
    item = raw_item(dynamodb, environment, EVENT_CONNECTION_ID)
    assert item["status"]["S"] == "DISCONNECTED"
    assert "tokens" not in item and "accessTokenExpiresAt" not in item
    assert not any(token in json.dumps(item) for token in secrets_of(event_connection))
    # And a second delete answers the same, without calling the provider again
    second = invoke("InitiateFunction", load_event("connection-delete.json"))
    assert second["statusCode"] == 200
    assert json_body(second) == body
    assert len(provider_server.requests_to("/google/revoke")) == 1
    # And the connection reads as DISCONNECTED
    assert json_body(invoke("InitiateFunction", load_event("connection-get.json")))["connection"] == body["connection"]


def test_delete_of_a_microsoft_connection_has_no_revocation_to_report(
    api_client, provider_server, dynamodb, environment
):
    # Given a Microsoft connection (Microsoft has no revocation endpoint)
    client, key = api_client
    seeded = seed(client.clientId, provider_id="microsoft")
    # When it is deleted
    answer = delete(key, seeded.connection_id)
    # Then revokedAtProvider is null, nothing was sent anywhere, and the tokens are gone
    assert answer["statusCode"] == 200
    assert json_body(answer)["revokedAtProvider"] is None
    assert json_body(answer)["connection"]["status"] == "DISCONNECTED"
    assert provider_server.received == []
    assert "tokens" not in raw_item(dynamodb, environment, seeded.connection_id)
    assert json_body(delete(key, seeded.connection_id)) == json_body(answer)


@pytest.mark.parametrize("revocation_status", [400, 503])
def test_a_failed_revocation_still_erases_the_tokens_and_says_so(
    api_client, provider_server, dynamodb, environment, revocation_status
):
    # Given Google's revocation endpoint failing
    client, key = api_client
    seeded = seed(client.clientId)
    provider_server.revocation_status = revocation_status
    # When the connection is deleted
    answer = delete(key, seeded.connection_id)
    # Then it is DISCONNECTED with its tokens erased, and the answer says revocation failed
    assert answer["statusCode"] == 200
    assert json_body(answer)["revokedAtProvider"] is False
    assert json_body(answer)["connection"]["status"] == "DISCONNECTED"
    assert len(provider_server.requests_to("/google/revoke")) == 1
    assert "tokens" not in raw_item(dynamodb, environment, seeded.connection_id)
    # And a second delete answers the same
    assert json_body(delete(key, seeded.connection_id)) == json_body(answer)


def test_an_unreachable_revocation_endpoint_still_erases_the_tokens(api_client, provider_server, dynamodb, environment):
    # Given Google's revocation endpoint on a port nobody listens on
    client, key = api_client
    seeded = seed(client.clientId)
    providers = deployment.current().providers
    providers["google"] = providers["google"].model_copy(update={"revocation_endpoint": "http://127.0.0.1:9/revoke"})
    # When deleted; Then revocation is reported failed and the tokens are erased all the same
    answer = delete(key, seeded.connection_id)
    assert answer["statusCode"] == 200
    assert json_body(answer)["revokedAtProvider"] is False
    assert "tokens" not in raw_item(dynamodb, environment, seeded.connection_id)


def test_a_disconnected_connection_gets_no_access_token(api_client, provider_server):
    client, key = api_client
    seeded = seed(client.clientId, expires_in=3600)
    assert delete(key, seeded.connection_id)["statusCode"] == 200
    answer = access_token(key, seeded.connection_id)
    assert error_code(answer) == (428, "DISCONNECTED")
    assert json_body(answer)["message"]
    assert provider_server.requests_to("/google/token") == []


# --- access tokens -----------------------------------------------------------------------------------------


def test_a_valid_access_token_is_answered_without_a_refresh(event_connection, provider_server):
    # Given the event file's connection, its token valid for an hour
    # When the access-token event file is invoked
    answer = invoke("InitiateFunction", load_event("connection-access-token.json"))
    # Then the stored token comes back as is, uncached, and the provider was not asked
    assert answer["statusCode"] == 200
    assert answer["headers"]["Cache-Control"] == "no-store"
    assert json_body(answer) == {
        "accessToken": event_connection.tokens.access_token,
        "expiresAt": iso(event_connection.tokens.expires_at),
    }
    assert provider_server.received == []


def test_a_token_expiring_within_five_minutes_is_refreshed_first(api_client, provider_server):
    # Given a Google token that expires in 4 minutes, and Google ready to refresh it
    client, key = api_client
    seeded = seed(client.clientId, expires_in=240)
    provider_server.script("/google/token", refreshed("ya29.fresh-google-token"))
    # When a token is asked for
    before = int(time.time())
    answer = access_token(key, seeded.connection_id)
    # Then the refreshed one is answered, with its new expiry
    assert answer["statusCode"] == 200
    body = json_body(answer)
    assert body["accessToken"] == "ya29.fresh-google-token"
    assert (
        before + 3599 <= calendar.timegm(time.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%SZ")) <= time.time() + 3599
    )
    # And the refresh used the stored refresh token and the client's credentials
    [request] = provider_server.requests_to("/google/token")
    assert request.form["grant_type"] == "refresh_token"
    assert request.form["refresh_token"] == seeded.tokens.refresh_token
    assert request.form["client_id"] == GOOGLE_CLIENT_ID
    # And it is stored: the next call answers it without asking Google again; Google's refresh token is kept
    assert json_body(access_token(key, seeded.connection_id)) == body
    assert len(provider_server.requests_to("/google/token")) == 1
    kept = stored_tokens(seeded.connection_id)
    assert kept is not None and kept.refresh_token == seeded.tokens.refresh_token


def test_a_rotated_refresh_token_is_the_one_the_next_refresh_sends(api_client, provider_server):
    # Given a Microsoft connection whose token expires in a minute; Microsoft rotates refresh tokens
    client, key = api_client
    seeded = seed(client.clientId, provider_id="microsoft", expires_in=60)
    provider_server.script(
        "/microsoft/token",
        refreshed("ms-access-2", refresh="ms-refresh-2", expires_in=120),
        refreshed("ms-access-3", refresh="ms-refresh-3"),
    )
    # When a token is asked for twice (the first refresh grants only two minutes, so the second refreshes again)
    assert json_body(access_token(key, seeded.connection_id))["accessToken"] == "ms-access-2"
    assert json_body(access_token(key, seeded.connection_id))["accessToken"] == "ms-access-3"
    # Then each refresh sent the refresh token the previous one returned
    sent = [r.form["refresh_token"] for r in provider_server.requests_to("/microsoft/token")]
    assert sent == [seeded.tokens.refresh_token, "ms-refresh-2"]
    assert all(r.form["client_id"] == MICROSOFT_CLIENT_ID for r in provider_server.requests_to("/microsoft/token"))
    kept = stored_tokens(seeded.connection_id)
    assert kept is not None and kept.refresh_token == "ms-refresh-3"


_CONTAINER = """
import json, sys
from calendar_connect import connections, deployment
from tests.support.lambda_runtime import handler_module, invoke
event = json.loads(sys.argv[1])
handler_module("InitiateFunction")
deployment.current().storage, deployment.current().cipher  # a warm container
print("READY", flush=True)
sys.stdin.readline()
print("ANSWER " + json.dumps(invoke("InitiateFunction", event)), flush=True)
"""


def test_ten_concurrent_calls_cause_one_refresh_and_keep_the_rotated_refresh_token(
    api_client, provider_server, environment
):
    # Given a Microsoft connection whose token expires in a minute, and Microsoft slow to refresh it once
    client, key = api_client
    seeded = seed(client.clientId, provider_id="microsoft", expires_in=60)
    provider_server.script(
        "/microsoft/token", Answer(200, refreshed("ms-access-2", refresh="ms-refresh-2").body, delay=0.5)
    )
    # And ten warm Lambda containers (one process each: a container serves one request at a time)
    event = json.dumps(connection_event("connection-access-token.json", key, connection_id=seeded.connection_id))
    path = os.pathsep.join([str(ROOT), str(ROOT / "layers/shared/python")])
    containers = [
        subprocess.Popen(
            [sys.executable, "-c", _CONTAINER, event],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        for _ in range(10)
    ]
    try:
        for container in containers:
            assert container.stdout is not None
            assert container.stdout.readline().strip() == "READY"
        # When all ten ask for a token at once
        for container in containers:
            assert container.stdin is not None
            container.stdin.write("go\n")
            container.stdin.flush()
        with ThreadPoolExecutor(10) as pool:
            outputs = list(pool.map(lambda c: c.communicate(timeout=60), containers))
    finally:
        for container in containers:
            if container.poll() is None:
                container.kill()
    answers = []
    for stdout, stderr in outputs:
        lines = [line for line in stdout.splitlines() if line.startswith("ANSWER ")]
        assert lines, stderr
        answers.append(json.loads(lines[0].removeprefix("ANSWER ")))
    # Then Microsoft saw exactly one refresh, with the stored refresh token
    [request] = provider_server.requests_to("/microsoft/token")
    assert request.form["refresh_token"] == seeded.tokens.refresh_token
    # And all ten got the same valid token
    assert [a["statusCode"] for a in answers] == [200] * 10
    assert {a["body"] for a in answers} == {answers[0]["body"]}
    assert json_body(answers[0])["accessToken"] == "ms-access-2"
    # And the rotated refresh token is the one stored
    kept = stored_tokens(seeded.connection_id)
    assert kept is not None
    assert (kept.access_token, kept.refresh_token) == ("ms-access-2", "ms-refresh-2")
    # And no container logged a token
    logged = "\n".join(
        line for stdout, stderr in outputs for line in (stdout + stderr).splitlines() if not line.startswith("ANSWER ")
    )
    assert logged
    for token in [*secrets_of(seeded), "ms-access-2", "ms-refresh-2"]:
        assert token not in logged


def test_concurrent_callers_share_one_refresh_even_when_the_provider_grants_under_five_minutes(
    api_client, provider_server
):
    # Given a token expiring in a minute, and a provider whose fresh tokens last only two minutes
    client, _ = api_client
    seeded = seed(client.clientId, provider_id="microsoft", expires_in=60)
    provider_server.script(
        "/microsoft/token",
        Answer(200, refreshed("ms-short", refresh="ms-refresh-short", expires_in=120).body, delay=0.5),
    )
    # When eight callers ask at once, each with a container's own deployment (its own DynamoDB and HTTP clients)
    settings = deployment.current().settings
    start = threading.Barrier(8)

    def ask(_: int) -> Any:
        container = Deployment(settings)
        start.wait()
        return connections.access_token(container, client, seeded.connection_id)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    # Then the ones that waited took the short-lived token rather than refreshing again each
    assert len(provider_server.requests_to("/microsoft/token")) == 1
    assert {a.accessToken for a in answers} == {"ms-short"}


def test_a_disconnect_during_a_refresh_wins_and_the_refreshed_token_is_not_handed_out(api_client, provider_server):
    # Given a Google token expiring in a minute, and the connection disconnected while Google refreshes it
    client, key = api_client
    seeded = seed(client.clientId, expires_in=60)
    settings = deployment.current().settings

    def disconnect_then_answer(received: Any) -> Answer:
        gone = connections.disconnect(Deployment(settings), client, seeded.connection_id)
        assert gone.connection.status == "DISCONNECTED"
        return refreshed("ya29.too-late")

    provider_server.script("/google/token", disconnect_then_answer)
    # When a token is asked for
    answer = access_token(key, seeded.connection_id)
    # Then the disconnect stands: 428 DISCONNECTED, the old refresh token revoked, no token written back
    assert error_code(answer) == (428, "DISCONNECTED")
    assert "ya29.too-late" not in answer["body"]
    assert [r.form["token"] for r in provider_server.requests_to("/google/revoke")] == [seeded.tokens.refresh_token]
    record = deployment.current().storage.connections.get(seeded.connection_id)
    assert record is not None
    assert (record.status, record.tokens, record.refreshLeaseUntil) == (ConnectionStatus.DISCONNECTED, None, None)


def test_a_provider_failure_on_refresh_is_503_and_leaves_the_connection_as_it_was(api_client, provider_server):
    # Given a token expiring in a minute, and Google answering 500 to the refresh
    client, key = api_client
    seeded = seed(client.clientId, expires_in=60)
    provider_server.script("/google/token", Answer(500, {"error": "server_error"}))
    before = deployment.current().storage.connections.get(seeded.connection_id)
    # When a token is asked for
    answer = access_token(key, seeded.connection_id)
    # Then 503 UNAVAILABLE with Retry-After, and the connection is unchanged (same tokens, status, version, no lease)
    assert error_code(answer) == (503, "UNAVAILABLE")
    assert int(answer["headers"]["Retry-After"]) > 0
    after = deployment.current().storage.connections.get(seeded.connection_id)
    assert after == before
    assert stored_tokens(seeded.connection_id) == seeded.tokens
    # And the next call, Google well again, refreshes at once (no lease left behind)
    provider_server.script("/google/token", refreshed("ya29.after-outage"))
    assert json_body(access_token(key, seeded.connection_id))["accessToken"] == "ya29.after-outage"


def test_tokens_that_no_longer_decrypt_are_500_without_internals(api_client, environment, monkeypatch):
    # Given a connection whose tokens were written under another key
    client, key = api_client
    seeded = seed(client.clientId)
    monkeypatch.setenv("LOCAL_TOKEN_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    deployment.reset()
    # When a token is asked for; Then 500 INTERNAL, saying nothing of how
    answer = access_token(key, seeded.connection_id)
    assert error_code(answer) == (500, "INTERNAL")
    assert "Traceback" not in answer["body"] and "Decryption" not in answer["body"]
    # And it can still be disconnected: nothing to revoke with, tokens erased
    disconnected = delete(key, seeded.connection_id)
    assert disconnected["statusCode"] == 200
    assert json_body(disconnected)["revokedAtProvider"] is False
    assert deployment.current().storage.connections.get(seeded.connection_id).tokens is None  # type: ignore[union-attr]


# --- losing consent and connecting again, through the real connect flow -------------------------------------


def connect_google(provider_server: ProviderServer, api_key: str, schedule_id: str) -> str:
    """Initiate, then the provider's redirect to the callback with Google's token answer: the connectionId."""
    request = load_event("initiate-wix.json")
    request["headers"]["authorization"] = f"Bearer {api_key}"
    body = json.loads(request["body"])
    request["body"] = json.dumps(body | {"scheduleId": schedule_id})
    started = invoke("InitiateFunction", request)
    assert started["statusCode"] == 200, started["body"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(json_body(started)["oauthUrl"]).query).items()}
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, params["nonce"])))
    callback = load_event("callback-success.json")
    query = {
        "state": params["state"],
        "code": f"4/0A-{secrets.token_hex(6)}",
        "scope": "openid email https://www.googleapis.com/auth/calendar",
        "iss": "https://accounts.google.com",
    }
    callback["rawQueryString"] = urlencode(query)
    callback["queryStringParameters"] = query
    redirect = invoke("CallbackFunction", callback)
    assert redirect["statusCode"] == 302
    location = parse_qs(urlsplit(redirect["headers"]["Location"]).query)
    assert "connectionId" in location, redirect["headers"]["Location"]
    return location["connectionId"][0]


def test_lost_consent_is_428_reauth_required_until_a_reconnect_restores_the_same_connection(
    api_client, provider_server, log_lines
):
    # Given a Google connection made through the connect flow
    client, key = api_client
    schedule = f"schedule-{secrets.token_hex(4)}"
    connection_id = connect_google(provider_server, key, schedule)
    assert connection_id == connection_id_for(client.clientId, "google", schedule, "110169484474386276334")
    assert json_body(access_token(key, connection_id))["accessToken"] == "ya29.a0-google-access-token"
    # And its access token close to expiry, and Google no longer honouring the refresh token
    here = deployment.current()
    record = here.storage.connections.get(connection_id)
    assert record is not None
    tokens = stored_tokens(connection_id)
    assert tokens is not None
    expiring = tokens.model_copy(update={"expires_at": int(time.time()) + 30})
    here.storage.connections.upsert_connected(
        record.model_copy(update={"tokens": here.cipher.encrypt(connection_id, expiring)})
    )
    provider_server.script(
        "/google/token",
        Answer(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )
    # When a token is asked for
    answer = access_token(key, connection_id)
    # Then 428 REAUTH_REQUIRED, and the connection is listed and read as REAUTH_REQUIRED
    assert error_code(answer) == (428, "REAUTH_REQUIRED")
    assert json_body(answer)["message"]
    listed = json_body(list_page(key, schedule))["connections"]
    assert [(c["connectionId"], c["status"]) for c in listed] == [(connection_id, "REAUTH_REQUIRED")]
    assert json_body(get(key, connection_id))["connection"]["status"] == "REAUTH_REQUIRED"
    # And asking again does not bother Google again
    assert error_code(access_token(key, connection_id)) == (428, "REAUTH_REQUIRED")
    assert len(provider_server.requests_to("/google/token")) == 2  # the code exchange, the one refresh
    # When the person connects the same account to the same schedule again
    again = connect_google(provider_server, key, schedule)
    # Then it is the same connection, CONNECTED, with working tokens
    assert again == connection_id
    connection = json_body(get(key, connection_id))["connection"]
    assert connection["status"] == "CONNECTED"
    assert connection["createdAt"] == json_body(list_page(key, schedule))["connections"][0]["createdAt"]
    assert json_body(access_token(key, connection_id))["accessToken"] == "ya29.a0-google-access-token"
    # And disconnecting it revokes the new refresh token
    gone = delete(key, connection_id)
    assert json_body(gone)["revokedAtProvider"] is True
    assert provider_server.requests_to("/google/revoke")[-1].form["token"] == "1//0g-google-refresh-token"
    # And no log line carried a token or a code
    logs = log_lines()
    assert logs
    for secret in ("ya29.a0-google-access-token", "1//0g-google-refresh-token", "4/0A-"):
        assert secret not in logs


def test_no_token_appears_in_any_log_line(api_client, provider_server, log_lines):
    # Given connections exercised through every route: read, list, refresh, failed refresh, lost consent, delete
    client, key = api_client
    schedule = f"schedule-{secrets.token_hex(4)}"
    kept = seed(client.clientId, schedule_id=schedule)
    refreshing = seed(client.clientId, schedule_id=schedule, expires_in=10)
    failing = seed(client.clientId, schedule_id=schedule, expires_in=10)
    lost = seed(client.clientId, schedule_id=schedule, expires_in=10)
    provider_server.script(
        "/google/token",
        refreshed("ya29.logged-never"),
        Answer(503, {"error": "temporarily_unavailable"}),
        Answer(400, {"error": "invalid_grant"}),
    )
    get(key, kept.connection_id)
    list_page(key, schedule)
    assert access_token(key, kept.connection_id)["statusCode"] == 200
    assert access_token(key, refreshing.connection_id)["statusCode"] == 200
    assert access_token(key, failing.connection_id)["statusCode"] == 503
    assert access_token(key, lost.connection_id)["statusCode"] == 428
    provider_server.revocation_status = 400
    for seeded in (kept, refreshing, failing, lost):
        assert delete(key, seeded.connection_id)["statusCode"] == 200
    # Then the log has lines, and no token in any of them
    logs = log_lines()
    assert logs.count("\n") >= 4
    for token in [*secrets_of(kept, refreshing, failing, lost), "ya29.logged-never", key]:
        assert token not in logs


# --- the error rows every connection route shares ---------------------------------------------------------


ROUTES = ["connection-get.json", "connections-list.json", "connection-delete.json", "connection-access-token.json"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer cc_nobody0000_" + "A" * 43, "Basic dXNlcjpwYXNz", "Bearer "])
def test_every_connection_route_refuses_a_missing_or_unknown_key(route, authorization, event_connection):
    event = load_event(route)
    if authorization is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = authorization
    answer = invoke("InitiateFunction", event)
    assert error_code(answer) == (401, "UNAUTHENTICATED")
    assert json_body(answer)["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_every_connection_route_refuses_a_revoked_key(route, api_client, storage):
    client, key = api_client
    seeded = seed(client.clientId)
    storage.api_clients.revoke(client.clientId)
    answer = call(route, key, connection_id=seeded.connection_id)
    assert error_code(answer) == (401, "UNAUTHENTICATED")


@pytest.mark.parametrize("route", ROUTES)
def test_every_connection_route_accepts_the_token_scheme(route, event_connection):
    event = load_event(route)
    event["headers"]["authorization"] = f"Token {EXAMPLE_API_KEY}"
    assert invoke("InitiateFunction", event)["statusCode"] == 200


@pytest.mark.parametrize("route", ["connection-get.json", "connection-delete.json", "connection-access-token.json"])
def test_every_connection_route_answers_404_for_an_unknown_connection(route, example_client):
    answer = call(route, connection_id="9b2e3c4d-0000-5000-8000-00000000dead")
    assert error_code(answer) == (404, "NOT_FOUND")
    assert json_body(answer)["message"]


@pytest.mark.parametrize(
    "failing",
    [
        {"DYNAMODB_ENDPOINT": "http://127.0.0.1:9"},  # DynamoDB nowhere to be reached
        # The API keys readable but the connections table not (the route's own storage call fails)
        {"CONNECTIONS_TABLE": "NoSuchConnectionsTable"},
    ],
    ids=["dynamodb_unreachable", "connections_table_failing"],
)
@pytest.mark.parametrize("route", ROUTES)
def test_every_connection_route_is_503_when_its_storage_fails(route, failing, event_connection, monkeypatch):
    # Given the storage failing
    for name, value in failing.items():
        monkeypatch.setenv(name, value)
    deployment.reset()
    # When a route is called; Then 503 UNAVAILABLE with Retry-After, in the contract's shape
    answer = invoke("InitiateFunction", load_event(route))
    assert error_code(answer) == (503, "UNAVAILABLE")
    assert int(answer["headers"]["Retry-After"]) > 0
    assert set(json_body(answer)) == {"message", "details"}
