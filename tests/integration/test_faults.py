"""Fault injection: a DynamoDB Local of this module's own, stopped in the middle of real requests.

It keeps its data on disk (-dbPath), so when it comes back on the same port the test can read what
the failed request left behind: nothing half-written, and the same warm container serves again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calendar_connect import connect_flow, deployment
from calendar_connect.api_clients import register_client
from calendar_connect.dialects import Dialect
from calendar_connect.secret_hashes import hash_secret
from local.dynamodb import DynamoDBLocal, _jar, free_port
from tests.integration.test_callback import RETURN_URL, callback, connected, failed, start, tokens_for
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_PREFIX, handler_module, invoke, json_body, load_event
from tests.support.provider_server import Answer, Received


class DiskDynamoDBLocal(DynamoDBLocal):
    """DynamoDB Local keeping its tables in a directory, so they outlive a stop."""

    def __init__(self, directory: Path) -> None:
        super().__init__(free_port())
        self.directory = directory

    def start(self, timeout: float = 60.0) -> DiskDynamoDBLocal:
        jar = _jar()
        command = ["java", f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar)]
        command += ["-sharedDb", "-dbPath", str(self.directory), "-port", str(self.port)]
        log = self.directory / "dynamodb.log"
        deadline = time.monotonic() + timeout
        with log.open("ab") as output:
            self.process = subprocess.Popen(command, cwd=jar.parent, stdout=output, stderr=output)
        while True:
            if self.process.poll() is not None:
                # The port of the instance just stopped may not be free again yet: start anew until the deadline.
                if time.monotonic() > deadline:
                    raise RuntimeError(f"DynamoDB Local exited: {log.read_text()[-2000:]}")
                time.sleep(0.5)
                with log.open("ab") as output:
                    self.process = subprocess.Popen(command, cwd=jar.parent, stdout=output, stderr=output)
                continue
            try:
                self.client().list_tables()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)  # polling for readiness

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskDynamoDBLocal]:
    own = DiskDynamoDBLocal(tmp_path_factory.mktemp("dynamodb")).start()
    own.create_tables()
    yield own
    own.stop()


@pytest.fixture(autouse=True)
def on_own_database(
    database: DiskDynamoDBLocal, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> DiskDynamoDBLocal:
    """The functions pointed at this module's DynamoDB Local, running, with the event files' client."""
    if not database.running:
        database.start()
    monkeypatch.setenv("DYNAMODB_ENDPOINT", database.endpoint)
    deployment.reset()
    if deployment.current().storage.api_clients.get("example01") is None:
        register_client(deployment.current().storage.api_clients, "event files", [EXAMPLE_PREFIX], EXAMPLE_API_KEY)
    return database


def items(database: DynamoDBLocal, table: str) -> list[dict[str, Any]]:
    return database.client().scan(TableName=table, ConsistentRead=True)["Items"]


def initiate() -> dict[str, Any]:
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps({"providerId": "google", "scheduleId": "schedule-9", "redirectUrl": RETURN_URL})
    return invoke("InitiateFunction", event)


def assert_unavailable(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 503
    assert int(answer["headers"]["Retry-After"]) > 0
    body = json_body(answer)
    assert body["details"]["applicationError"]["code"] == "UNAVAILABLE"
    assert "oauthUrl" not in body


def state_of(answer: dict[str, Any]) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(json_body(answer)["oauthUrl"]).query)["state"][0]


def test_initiate_is_503_while_dynamodb_is_down_and_the_same_container_resumes_when_it_returns(database):
    # Given a warm container that has answered once
    before = initiate()
    assert before["statusCode"] == 200
    pending_before = len(items(database, "PendingAuthorizationsTable"))
    # When DynamoDB stops
    database.stop()
    began = time.monotonic()
    down = initiate()
    # Then initiate answers 503 UNAVAILABLE with Retry-After, promptly, and the browser side a 503 page
    assert_unavailable(down)
    assert time.monotonic() - began < 10
    page = callback({"state": state_of(before), "code": "c"})
    assert page["statusCode"] == 503 and "Location" not in page["headers"]
    # And when it comes back on the same port, the same container serves again without a restart
    database.start()
    after = initiate()
    assert after["statusCode"] == 200
    stored = {i["stateHash"]["S"] for i in items(database, "PendingAuthorizationsTable")}
    assert len(stored) == pending_before + 1
    assert hash_secret(state_of(after)) in stored


def test_dynamodb_lost_between_the_key_check_and_the_write_leaves_no_attempt(database, monkeypatch):
    # Given DynamoDB stops right after the API key was checked
    initiate_module = handler_module("InitiateFunction")
    real_authenticate = initiate_module.authenticate

    def authenticate_then_lose_storage(*args: Any) -> Any:
        client = real_authenticate(*args)
        database.stop()
        return client

    monkeypatch.setattr(initiate_module, "authenticate", authenticate_then_lose_storage)
    pending_before = items(database, "PendingAuthorizationsTable")
    # When a site starts a connection
    answer = initiate()
    # Then it gets 503 and no URL, and once DynamoDB is back no attempt was written for it
    assert_unavailable(answer)
    database.start()
    assert items(database, "PendingAuthorizationsTable") == pending_before


def test_callback_with_storage_lost_at_the_claim_is_a_503_page_and_can_be_retried(
    database, provider_server, monkeypatch
):
    # Given an attempt, and DynamoDB stopping just as the callback claims it (its first and only use of it)
    attempt = start("google", Dialect.WIX)
    pending_store = deployment.current().storage.pending
    real_claim = pending_store.claim

    def lose_storage_then_claim(*args: Any) -> Any:
        database.stop()
        return real_claim(*args)

    monkeypatch.setattr(pending_store, "claim", lose_storage_then_claim)
    # When the provider redirects back
    answer = callback({"state": attempt.state, "code": "c"})
    # Then the browser gets the 503 page (nothing was read, so no return URL is known), and no code was redeemed
    assert answer["statusCode"] == 503 and int(answer["headers"]["Retry-After"]) > 0
    assert "Location" not in answer["headers"]
    assert provider_server.requests_to("/google/token") == []
    # And once DynamoDB is back, the attempt is untouched: the same callback connects
    database.start()
    deployment.reset()  # a fresh container's storage, without the stop wired into it
    (item,) = [
        i for i in items(database, "PendingAuthorizationsTable") if i["stateHash"]["S"] == hash_secret(attempt.state)
    ]
    assert item["status"]["S"] == "PENDING"
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)


def test_callback_with_storage_lost_after_the_code_exchange_revokes_what_it_could_not_keep(
    database, provider_server, monkeypatch
):
    # The outcome could not be recorded either: a repeated callback waits this long for it, then gives up.
    monkeypatch.setattr(connect_flow, "_OUTCOME_WAIT_SECONDS", 0.5)
    # Given a token endpoint that answers only after DynamoDB has gone
    attempt = start("google", Dialect.WIX)
    connections_before = items(database, "ConnectionsTable")

    def lose_storage_then_grant(received: Received) -> Answer:
        database.stop()
        return Answer(200, tokens_for(attempt))

    provider_server.script("/google/token", lose_storage_then_grant)
    # When the provider redirects back
    answer = callback({"state": attempt.state, "code": "c"})
    # Then the browser goes home with internal/storage_unavailable
    assert failed(answer, Dialect.WIX) == ("internal", "storage_unavailable")
    # And the tokens it could not store were revoked at the provider, not left live
    assert provider_server.requests_to("/google/revoke")[0].form["token"] == "1//0g-google-refresh-token"
    # And once DynamoDB is back there is no connection, and the used state cannot connect again
    database.start()
    assert items(database, "ConnectionsTable") == connections_before
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert failed(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)[0] == "internal"
    assert len(provider_server.requests_to("/google/token")) == 1
