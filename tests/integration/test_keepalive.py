"""The keep-alive job against DynamoDB Local and a real token server on 127.0.0.1: what is due is found in the
sparse index (never by a Scan), refreshed with the access-token route's own code, and whatever fails stays due."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from botocore.awsrequest import AWSResponse

from calendar_connect import connections, deployment
from calendar_connect.dal import Connections, keepalive_shard
from calendar_connect.keepalive import KeepAliveRun, keep_alive
from calendar_connect.observability import metrics
from calendar_connect.records import ConnectionStatus
from local.dynamodb import free_port
from local.template import ROOT
from tests.integration.test_connections import access_token, raw_item, refreshed, seed, stored_tokens
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_CLIENT_ID, invoke
from tests.support.provider_server import Answer, Received

WEEK = 604800
PLENTY = 10**9  # milliseconds left: no deadline in sight
SCHEDULED_EVENT = json.loads((ROOT / "events" / "schedule" / "keepalive.json").read_text())


@pytest.fixture(autouse=True)
def only_these_connections(environment: dict[str, str], dynamodb: Any) -> None:
    """The session's DynamoDB holds other tests' connections (under other token keys): each test starts empty."""
    client, table = dynamodb.client(), environment["CONNECTIONS_TABLE"]
    for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="connectionId"):
        for item in page["Items"]:
            client.delete_item(TableName=table, Key={"connectionId": item["connectionId"]})


@pytest.fixture
def dynamodb_operations() -> Iterator[list[tuple[str, str | None]]]:
    """(operation, index) of every DynamoDB call the deployment's client makes."""
    calls: list[tuple[str, str | None]] = []
    client = deployment.current().storage.client

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, params.get("IndexName")))

    client.meta.events.register("before-parameter-build.dynamodb", record, unique_id="test-keepalive-operations")
    yield calls
    client.meta.events.unregister("before-parameter-build.dynamodb", unique_id="test-keepalive-operations")


def rotating(received: Received) -> Answer:
    """A token endpoint that rotates: each refresh token is answered with a new one derived from it."""
    return refreshed(f"at-{secrets.token_hex(6)}", refresh=received.form["refresh_token"] + "+1")


def run(now: int, remaining_ms: Any = lambda: PLENTY) -> KeepAliveRun:
    return keep_alive(deployment.current(), remaining_ms, now=now)


def due_in_index(dynamodb: Any, environment: dict[str, str], connection_id: str) -> int | None:
    item = raw_item(dynamodb, environment, connection_id)
    return int(item["keepAliveDueAt"]["N"]) if "keepAliveDueAt" in item else None


def test_due_connections_are_found_in_the_index_refreshed_rotated_and_rescheduled(
    example_client, provider_server, dynamodb, environment, dynamodb_operations
):
    # Given three connections due, two not yet due and one disconnected
    now = int(time.time())
    due = [seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 60 * n) for n in range(3)]
    later = [seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now + 3600) for _ in range(2)]
    gone = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 60)
    record = deployment.current().storage.connections.get(gone.connection_id)
    assert record is not None
    deployment.current().storage.connections.mark_disconnected(gone.connection_id, record.version, "x", None)
    provider_server.script("/google/token", *[rotating] * 3)
    dynamodb_operations.clear()
    # When the keep-alive job runs
    result = run(now)
    # Then it read the due ones from the keep-alive index and never scanned the table
    assert ("Query", Connections.keepalive_index) in dynamodb_operations
    assert not [op for op, _ in dynamodb_operations if op == "Scan"]
    assert (result.due, result.refreshed, result.reauth_required, result.failed) == (3, 3, 0, 0)
    # And each due one was refreshed with its own refresh token, the rotated one stored, its next due time moved
    sent = sorted(r.form["refresh_token"] for r in provider_server.requests_to("/google/token"))
    assert sent == sorted(s.tokens.refresh_token for s in due)
    for seeded in due:
        kept = stored_tokens(seeded.connection_id)
        assert kept is not None and kept.refresh_token == f"{seeded.tokens.refresh_token}+1"
        next_due = due_in_index(dynamodb, environment, seeded.connection_id)
        assert next_due is not None and now + 0.8 * WEEK <= next_due <= now + 0.9 * WEEK
    # And what was not due, or disconnected, was left alone
    for seeded in later:
        assert stored_tokens(seeded.connection_id) == seeded.tokens
    assert due_in_index(dynamodb, environment, gone.connection_id) is None
    # And a second run at the same time finds nothing left to do
    assert run(now).due == 0
    assert len(provider_server.requests_to("/google/token")) == 3


def test_invalid_grant_makes_the_connection_reauth_required_and_takes_it_out_of_the_index(
    example_client, provider_server, dynamodb, environment
):
    # Given a due connection whose refresh token the provider no longer honours
    now = int(time.time())
    seeded = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1)
    provider_server.script("/google/token", Answer(400, {"error": "invalid_grant"}))
    # When the job runs
    result = run(now)
    # Then the connection is REAUTH_REQUIRED (as the access-token route would make it), its tokens erased
    assert (result.due, result.reauth_required, result.refreshed, result.failed) == (1, 1, 0, 0)
    record = deployment.current().storage.connections.get(seeded.connection_id)
    assert record is not None and record.status is ConnectionStatus.REAUTH_REQUIRED and record.tokens is None
    # And it has left the index: a run a week later does not even read it
    item = raw_item(dynamodb, environment, seeded.connection_id)
    assert "keepAliveShard" not in item and "keepAliveDueAt" not in item
    assert run(now + WEEK).due == 0
    assert len(provider_server.requests_to("/google/token")) == 1


def _unreachable_token_endpoint(environment: dict[str, str], tmp_path: Any, monkeypatch: Any) -> None:
    extra = tmp_path / "refused.yaml"
    extra.write_text(yaml.safe_dump({"google": {"token_endpoint": f"http://127.0.0.1:{free_port()}/token"}}))
    monkeypatch.setenv("PROVIDERS_FILE", f"{environment['PROVIDERS_FILE']},{extra}")


def _slow_token_endpoint(provider_server: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.2")
    provider_server.script("/google/token", Answer(200, {"access_token": "late", "expires_in": 3600}, delay=1.0))


def _throttled_storage(client: Any) -> None:
    def throttled(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}
        return AWSResponse("http://dynamodb.invalid/", 400, {}, None), {**error, "ResponseMetadata": {}}

    client.meta.events.register("before-call.dynamodb.UpdateItem", throttled, unique_id="test-keepalive-throttled")


@pytest.mark.parametrize("failure", ["5xx", "timeout", "refused", "storage throttled"])
def test_a_transient_failure_changes_nothing_and_the_connection_stays_due(
    failure, example_client, provider_server, dynamodb, environment, tmp_path, monkeypatch
):
    # Given a due connection, and the provider (or DynamoDB) failing for a while
    now = int(time.time())
    seeded = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1)
    before = raw_item(dynamodb, environment, seeded.connection_id)
    if failure == "5xx":
        provider_server.script("/google/token", Answer(503, {"error": "temporarily_unavailable"}))
    elif failure == "timeout":
        _slow_token_endpoint(provider_server, monkeypatch)
    elif failure == "refused":
        _unreachable_token_endpoint(environment, tmp_path, monkeypatch)
    deployment.reset()
    if failure == "storage throttled":
        _throttled_storage(deployment.current().storage.client)
    # When the job runs
    result = run(now)
    # Then it counts a failure, and the connection is exactly as it was (no lease left behind): still due
    assert (result.due, result.failed, result.refreshed, result.reauth_required) == (1, 1, 0, 0)
    assert raw_item(dynamodb, environment, seeded.connection_id) == before
    # And once the failure is over, the next run refreshes it
    monkeypatch.undo()
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    deployment.reset()
    provider_server.script("/google/token", rotating)
    assert run(now + 60).refreshed == 1
    assert stored_tokens(seeded.connection_id).refresh_token == f"{seeded.tokens.refresh_token}+1"


def test_the_deadline_stops_the_run_early_and_the_rest_stays_due(example_client, provider_server):
    # Given five due connections, and an invocation whose time runs short after two are taken
    now = int(time.time())
    seeded = [seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - n) for n in range(5)]
    provider_server.script("/google/token", *[rotating] * 5)
    checks = iter([PLENTY, PLENTY])
    # When the job runs
    result = run(now, lambda: next(checks, 0))
    # Then it took two, refreshed them, and said it stopped early
    assert (result.due, result.refreshed, result.stopped_early) == (2, 2, True)
    assert len(provider_server.requests_to("/google/token")) == 2
    # And the three others are still due: the next run refreshes exactly them
    following = run(now)
    assert (following.due, following.refreshed, following.stopped_early) == (3, 3, False)
    sent = sorted(r.form["refresh_token"] for r in provider_server.requests_to("/google/token"))
    assert sent == sorted(s.tokens.refresh_token for s in seeded)


def test_a_connection_the_access_token_route_refreshed_is_no_longer_due(example_client, provider_server, dynamodb):
    # Given a due connection whose access token is about to expire
    now = int(time.time())
    seeded = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1, expires_in=60)
    provider_server.script("/google/token", rotating)
    # When the website asks for an access token (the route refreshes it), then the job runs
    assert access_token(EXAMPLE_API_KEY, seeded.connection_id)["statusCode"] == 200
    result = run(now)
    # Then the refresh token was used once, by the route, and the job had nothing to do
    assert result.due == 0
    assert len(provider_server.requests_to("/google/token")) == 1
    record = deployment.current().storage.connections.get(seeded.connection_id)
    assert record is not None and record.keepAliveDueAt is not None and record.keepAliveDueAt > now + 0.8 * WEEK


def test_a_disconnected_connection_is_never_refreshed(example_client, provider_server):
    # Given a due connection that is then disconnected through the API's own code
    now = int(time.time())
    seeded = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1)
    connections.disconnect(deployment.current(), example_client, seeded.connection_id)
    provider_server.script("/google/token", rotating)
    # When the job runs, even weeks later
    for later in (now, now + 4 * WEEK):
        assert run(later).due == 0
    # Then the token endpoint never heard of it
    assert provider_server.requests_to("/google/token") == []


def test_a_connection_disconnected_after_the_index_was_read_is_skipped(example_client, provider_server):
    # Given a due connection disconnected between the index query and its refresh (the index is eventually
    # consistent, and another request may win the race)
    now = int(time.time())
    seeded = seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1)
    client = deployment.current().storage.client

    def disconnect_first(**_: Any) -> None:
        client.meta.events.unregister("before-call.dynamodb.GetItem", unique_id="test-keepalive-race")
        connections.disconnect(deployment.current(), example_client, seeded.connection_id)

    client.meta.events.register("before-call.dynamodb.GetItem", disconnect_first, unique_id="test-keepalive-race")
    provider_server.script("/google/token", rotating)
    # When the job runs
    result = run(now)
    # Then it read the connection as it stands, and left it alone
    assert (result.due, result.skipped, result.refreshed) == (1, 1, 0)
    assert provider_server.requests_to("/google/token") == []


def test_the_scheduled_handler_runs_the_job_and_emits_its_counts(example_client, provider_server, monkeypatch, capsys):
    # Given one due connection and one the provider refuses, and metrics on as deployed
    now = int(time.time())
    seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 10)
    seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 5)
    provider_server.script("/google/token", rotating, Answer(400, {"error": "invalid_grant"}))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(metrics, "namespace", "CalendarConnect")  # template.yaml's; read at import, before the tests
    # The tests' Lambda context has 20 s: keep less than that back, as the deployed 900 s keep 60.
    monkeypatch.setenv("KEEPALIVE_STOP_MARGIN_SECONDS", "5")
    deployment.reset()
    capsys.readouterr()
    # When EventBridge's scheduled event invokes the function
    summary = invoke("KeepAliveFunction", SCHEDULED_EVENT)
    # Then it answers the run's counts, and publishes them as CloudWatch metrics (EMF)
    assert (summary["due"], summary["refreshed"], summary["reauth_required"], summary["failed"]) == (2, 1, 1, 0)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {k: v for record in emitted for k, v in record.items() if k.startswith("KeepAlive")}
    assert values == {  # Powertools writes each metric's values as a list
        "KeepAliveDue": [2.0],
        "KeepAliveRefreshed": [1.0],
        "KeepAliveFailed": [0.0],
        "KeepAliveReauthRequired": [1.0],
    }


def test_a_schedule_given_a_group_of_shards_refreshes_only_the_connections_in_it(
    example_client, provider_server, monkeypatch
):
    # Given due connections in several shards of the index
    now = int(time.time())
    seeded = [seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - 1) for _ in range(6)]
    shard_of = {s.connection_id: int(keepalive_shard(s.connection_id).removeprefix("ka#")) for s in seeded}
    group = sorted({shard_of[seeded[0].connection_id], shard_of[seeded[1].connection_id]})
    inside = [s for s in seeded if shard_of[s.connection_id] in group]
    provider_server.script("/google/token", *[rotating] * len(seeded))
    monkeypatch.setenv("KEEPALIVE_STOP_MARGIN_SECONDS", "5")
    deployment.reset()
    # When one of the template's schedules invokes the function with its group of shards as Input
    summary = invoke("KeepAliveFunction", {"shards": group})
    # Then exactly the connections of those shards were refreshed
    assert (summary["due"], summary["refreshed"]) == (len(inside), len(inside))
    sent = sorted(r.form["refresh_token"] for r in provider_server.requests_to("/google/token"))
    assert sent == sorted(s.tokens.refresh_token for s in inside)


@pytest.mark.parametrize("shards", [[16], [-1], [], "all"])
def test_a_schedule_input_naming_no_real_shard_fails_the_invocation(example_client, shards):
    with pytest.raises(ValueError):
        invoke("KeepAliveFunction", {"shards": shards})


def test_the_backfill_schedules_connections_made_before_the_keepalive_once(
    example_client, provider_server, dynamodb, environment, capsys
):
    # Given a CONNECTED connection written before the keep-alive existed (no schedule), and a disconnected one
    from scripts.keepalive_backfill import main

    now = int(time.time())
    old, gone = seed(EXAMPLE_CLIENT_ID), seed(EXAMPLE_CLIENT_ID)
    client, table = dynamodb.client(), environment["CONNECTIONS_TABLE"]
    for seeded in (old, gone):
        client.update_item(
            TableName=table,
            Key={"connectionId": {"S": seeded.connection_id}},
            UpdateExpression="REMOVE keepAliveShard, keepAliveDueAt",
        )
    record = deployment.current().storage.connections.get(gone.connection_id)
    assert record is not None
    deployment.current().storage.connections.mark_disconnected(gone.connection_id, record.version, "x", None)
    assert run(now + WEEK).due == 0  # invisible to the job
    # When the backfill runs, twice
    arguments = ["--table", table, "--endpoint", environment["DYNAMODB_ENDPOINT"]]
    assert main(arguments) == 0
    assert main(arguments) == 0
    # Then the first run scheduled the CONNECTED one (due at once) and the second found nothing left
    assert capsys.readouterr().out.splitlines() == [
        "scheduled 1 connection(s) for keep-alive",
        "scheduled 0 connection(s) for keep-alive",
    ]
    provider_server.script("/google/token", rotating)
    result = run(int(time.time()))
    assert (result.due, result.refreshed) == (1, 1)
    assert stored_tokens(old.connection_id).refresh_token == f"{old.tokens.refresh_token}+1"


def test_no_token_reaches_a_log_line_in_a_keepalive_run(example_client, provider_server, log_lines):
    # Given due connections: one refreshed (rotated), one refused, one whose provider fails
    now = int(time.time())
    seeded = [seed(EXAMPLE_CLIENT_ID, keepalive_due_at=now - n) for n in range(3)]
    answers: list[Answer] = []

    def scripted(received: Received) -> Answer:
        answers.append(rotating(received))
        return answers[-1]

    provider_server.script(
        "/google/token", scripted, Answer(400, {"error": "invalid_grant"}), Answer(500, {"error": "server_error"})
    )
    # When the job runs, every logger at DEBUG (log_lines)
    result = run(now)
    # Then no token, old or new, is in any log line, while the run did log its work
    assert (result.refreshed, result.reauth_required, result.failed) == (1, 1, 1)
    logged = log_lines()
    assert "keep-alive refresh failed" in logged and "refresh token no longer honoured" in logged
    issued = [a.body["access_token"] for a in answers] + [a.body["refresh_token"] for a in answers]
    for secret in [t for s in seeded for t in (s.tokens.access_token, s.tokens.refresh_token)] + issued:
        assert secret not in logged
