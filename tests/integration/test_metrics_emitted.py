"""The metrics the functions print (EMF on stdout, as Lambda sends them to CloudWatch), read back from the
handlers invoked with event files against DynamoDB Local; and the attempt id on every log line of an attempt.

The last test ties them to template.yaml: every metric of ours an alarm or the dashboard names is emitted by
one of these flows, with the dimension set the alarm or widget reads.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.metrics.provider import cold_start

from calendar_connect import deployment, observability
from calendar_connect.dialects import Dialect
from calendar_connect.observability import metrics
from calendar_connect.secret_hashes import hash_secret
from calendar_connect.webhook_delivery import RETRY_WINDOW_SECONDS
from local.template import ROOT, load_template
from tests.conftest import GOOGLE_CLIENT_ID
from tests.integration.test_browser_binding import hop
from tests.integration.test_callback import callback, connected, failed, seed, start, tokens_for
from tests.integration.test_connections import access_token, refreshed
from tests.integration.test_connections import seed as seed_connection
from tests.integration.test_webhooks import Streams, deliveries_of, register, webhook_call
from tests.integration.test_webhooks import connect as webhook_connect
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_CLIENT_ID, invoke, json_body, load_event
from tests.support.observability_template import (
    MetricReference,
    alarm_references,
    dashboard_body,
    dashboard_references,
)
from tests.support.provider_server import Answer, google_tokens
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("example_client")
SERVICE = "calendar-connect"
KEEPALIVE_SCHEDULED_EVENT = json.loads((ROOT / "events" / "schedule" / "keepalive.json").read_text())
RETRY_SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


class Emitted:
    """The EMF lines printed since the last read: each counted metric with its dimension values and sets."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        lines = self.capsys.readouterr().out.splitlines()
        blobs = [json.loads(line) for line in lines if line.startswith('{"_aws"')]
        self.seen += blobs
        return blobs

    @staticmethod
    def counts(blobs: list[dict[str, Any]], metric: str) -> list[dict[str, str]]:
        """Each count of `metric`: its dimension values (every set's keys)."""
        found = []
        for blob in blobs:
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                if any(m["Name"] == metric for m in directive["Metrics"]):
                    assert directive["Namespace"] == "CalendarConnect"
                    keys = {key for dimension_set in directive["Dimensions"] for key in dimension_set}
                    found.append({key: blob[key] for key in keys})
        return found

    @staticmethod
    def total(blobs: list[dict[str, Any]], metric: str) -> float:
        """The sum of every value of `metric` in these lines (Powertools writes a list when there are several)."""
        values = [blob[metric] for blob in blobs if metric in blob]
        return sum(sum(v) if isinstance(v, list) else v for v in values)

    @staticmethod
    def values(blobs: list[dict[str, Any]], metric: str) -> list[float]:
        found: list[float] = []
        for blob in blobs:
            if metric in blob:
                found += blob[metric] if isinstance(blob[metric], list) else [blob[metric]]
        return found

    def covers(self, ref: MetricReference, function_names: dict[str, str]) -> bool:
        """Some line seen counts ref's metric under a dimension set of exactly ref's keys, with its values."""
        for blob in self.seen:
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                if not any(m["Name"] == ref.name for m in directive["Metrics"]):
                    continue
                for dimension_set in directive["Dimensions"]:
                    if set(dimension_set) != ref.keys:
                        continue
                    wanted = {k: function_names.get(v, v) for k, v in ref.dimensions if v is not None}
                    if all(blob[k] == v for k, v in wanted.items()):
                        return True
        return False


@pytest.fixture
def emitted(environment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Emitted:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: EMF on stdout
    # The shared Metrics was made at import, before this environment: give it what Lambda's would read.
    monkeypatch.setattr(metrics, "namespace", environment["POWERTOOLS_METRICS_NAMESPACE"])
    monkeypatch.setattr(metrics, "service", environment["POWERTOOLS_SERVICE_NAME"])
    capsys.readouterr()
    return Emitted(capsys)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- the flows -------------------------------------------------------------------------------------------


def connect(provider_server: Any, provider: str = "google", dialect: Dialect = Dialect.WIX) -> str:
    attempt = start(provider, dialect)
    provider_server.script(f"/{provider}/token", Answer(200, tokens_for(attempt)))
    return connected(callback({"state": attempt.state, "code": "auth-code"}), dialect)


def fail(provider_server: Any, how: str, dialect: Dialect = Dialect.TEAMUP) -> tuple[str, str]:
    attempt = start("google", dialect)
    if how == "token_endpoint_down":
        provider_server.script("/google/token", Answer(503, {"error": "temporarily_unavailable"}))
        return failed(callback({"state": attempt.state, "code": "auth-code"}), dialect)
    return failed(callback({"state": attempt.state, "error": how}), dialect)


def open_and_expire_start_links(storage: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_BINDING", "true")
    deployment.reset()
    event = load_event("initiate-wix.json")
    attempt = _query(json.loads(invoke("InitiateFunction", event)["body"])["oauthUrl"])["attempt"]
    assert hop(attempt)["statusCode"] == 302
    late = "late-attempt-" + secrets.token_urlsafe(24)  # one per call: the table lives for the session
    seed(storage, late, binding=True, expires_in=-1)
    assert _query(hop(late)["headers"]["Location"])["reason"] == "expired"


def serve_refresh_and_lose_access_tokens(provider_server: Any) -> None:
    fresh = seed_connection(EXAMPLE_CLIENT_ID, schedule_id="schedule-metrics-1")
    assert access_token(EXAMPLE_API_KEY, fresh.connection_id)["statusCode"] == 200
    expiring = seed_connection(EXAMPLE_CLIENT_ID, schedule_id="schedule-metrics-2", expires_in=60)
    provider_server.script("/google/token", refreshed("ya29.refreshed"))
    assert access_token(EXAMPLE_API_KEY, expiring.connection_id)["statusCode"] == 200
    lost = seed_connection(EXAMPLE_CLIENT_ID, schedule_id="schedule-metrics-3", expires_in=60)
    provider_server.script("/google/token", Answer(400, {"error": "invalid_grant"}))
    assert access_token(EXAMPLE_API_KEY, lost.connection_id)["statusCode"] == 428


def cold_start_both_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    for function, event in (("InitiateFunction", "providers-list.json"), ("CallbackFunction", "start-attempt.json")):
        monkeypatch.setattr(cold_start, "is_cold_start", True)  # this process's first invocation was long ago
        invoke(function, load_event(event))
        invoke(function, load_event(event))  # warm: not counted


@pytest.fixture
def hooked_receiver(api_client: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, Any]]:
    """A fresh API client whose webhook is a receiver on 127.0.0.1."""
    monkeypatch.setenv("ALLOW_PRIVATE_WEBHOOKS", "true")
    deployment.reset()
    receiver = WebhookReceiver().start()
    client, key = api_client
    answer = register(key, receiver.url)
    assert answer["statusCode"] == 200, answer["body"]
    receiver.secret = json_body(answer)["secret"]
    yield client, key, receiver
    webhook_call("webhook-delete.json", key)
    receiver.stop()


def deliver_retry_and_dead_letter_webhooks(
    hooked: tuple[Any, str, Any], streams: Streams, provider_server: Any
) -> None:
    """WebhookDeliveryFunction delivers one event and fails another; WebhookRetryFunction gives the failed one up."""
    client, key, receiver = hooked
    schedule = f"metrics-{time.time_ns()}"
    receiver.status = 200
    webhook_connect(provider_server, key, schedule, sub="metrics-delivered")
    streams.pump()
    receiver.status = 503
    webhook_connect(provider_server, key, schedule, sub="metrics-retried")
    streams.pump()
    (failed,) = [d for d in deliveries_of(client.clientId) if d.status == "PENDING"]
    # Its first attempt a day ago, due now: the retry function's failed attempt is its last
    storage = _retried_for_the_last_time(failed.deliveryId)
    assert storage.webhook_deliveries.get(failed.deliveryId).status == "DEAD"


def _retried_for_the_last_time(delivery_id: str) -> Any:
    """Its first attempt a day ago and due now, a delivery is retried by the retry function for the last time."""
    now = int(time.time())
    storage = deployment.current().storage
    storage.client.update_item(
        TableName=storage.webhook_deliveries.name,
        Key={"deliveryId": {"S": delivery_id}},
        UpdateExpression="SET firstAttemptAt = :first, nextAttemptAt = :next",
        ExpressionAttributeValues={":first": {"N": str(now - RETRY_WINDOW_SECONDS - 60)}, ":next": {"N": str(now - 1)}},
    )
    invoke("WebhookRetryFunction", RETRY_SCHEDULED_EVENT)
    return storage


def run_keepalive(provider_server: Any, monkeypatch: pytest.MonkeyPatch, dynamodb: Any, environment: Any) -> None:
    """KeepAliveFunction's scheduled run over three due connections: one refreshed, one refused, one failing."""
    # Only these connections due: earlier tests' connections would take the scripted answers
    client, table = dynamodb.client(), environment["CONNECTIONS_TABLE"]
    for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="connectionId"):
        for item in page["Items"]:
            client.delete_item(TableName=table, Key={"connectionId": item["connectionId"]})
    now = int(time.time())
    for n in range(3):
        seed_connection(EXAMPLE_CLIENT_ID, schedule_id=f"schedule-keepalive-{n}", keepalive_due_at=now - 10 - n)
    provider_server.script(
        "/google/token",
        refreshed("ya29.kept-alive", refresh="rt-kept-alive"),
        Answer(400, {"error": "invalid_grant"}),
        Answer(503, {"error": "temporarily_unavailable"}),
    )
    monkeypatch.setenv("KEEPALIVE_STOP_MARGIN_SECONDS", "5")  # the tests' context has 20 s, as 900 keep 60
    deployment.reset()
    summary = invoke("KeepAliveFunction", KEEPALIVE_SCHEDULED_EVENT)
    assert (summary["due"], summary["refreshed"], summary["reauth_required"], summary["failed"]) == (3, 1, 1, 1)


# --- each count, with its dimensions ---------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "dialect"), [("google", Dialect.WIX), ("microsoft", Dialect.TEAMUP)])
def test_a_connect_counts_one_start_and_one_connected_finish(emitted, provider_server, provider, dialect):
    # When an attempt is started and connected
    connect(provider_server, provider, dialect)
    # Then one start and one finish are counted, by provider and dialect, connected without a reason
    blobs = emitted.read()
    assert Emitted.counts(blobs, "AuthorizationStarted") == [
        {"service": SERVICE, "provider": provider, "dialect": dialect.value}
    ]
    assert Emitted.counts(blobs, "AuthorizationFinished") == [
        {"service": SERVICE, "provider": provider, "dialect": dialect.value, "outcome": "connected", "reason": "none"}
    ]


@pytest.mark.parametrize(
    ("how", "outcome"),
    [
        ("token_endpoint_down", ("internal", "token_exchange_failed")),
        ("server_error", ("internal", "provider_error")),
        ("access_denied", ("reject", "access_denied")),
    ],
)
def test_a_failed_attempt_is_counted_by_its_outcome_and_reason(emitted, provider_server, how, outcome):
    assert fail(provider_server, how) == outcome
    (finished,) = Emitted.counts(emitted.read(), "AuthorizationFinished")
    assert finished == {
        "service": SERVICE,
        "provider": "google",
        "dialect": "teamup",
        "outcome": outcome[0],
        "reason": outcome[1],
    }


def test_a_replayed_callback_is_not_a_second_finish(emitted, provider_server):
    attempt = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    first = connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX) == first
    assert len(Emitted.counts(emitted.read(), "AuthorizationFinished")) == 1


def test_an_expired_callback_is_a_finish_with_reason_expired(emitted, storage):
    state = "expired-state-" + secrets.token_urlsafe(24)
    seed(storage, state, expires_in=-1, dialect=Dialect.TEAMUP)
    assert failed(callback({"state": state, "code": "c"}), Dialect.TEAMUP) == ("internal", "expired")
    assert Emitted.counts(emitted.read(), "AuthorizationFinished") == [
        {"service": SERVICE, "provider": "google", "dialect": "teamup", "outcome": "internal", "reason": "expired"}
    ]


def test_the_start_hop_counts_links_opened_and_links_expired(emitted, storage, monkeypatch):
    open_and_expire_start_links(storage, monkeypatch)
    blobs = emitted.read()
    assert Emitted.counts(blobs, "StartLinkOpened") == [{"service": SERVICE, "provider": "google"}]
    assert Emitted.counts(blobs, "StartLinkExpired") == [{"service": SERVICE, "provider": "google"}]


def test_access_tokens_served_refreshed_and_lost_consent_are_counted(emitted, provider_server):
    serve_refresh_and_lose_access_tokens(provider_server)
    blobs = emitted.read()
    google = {"service": SERVICE, "provider": "google"}
    assert Emitted.counts(blobs, "AccessTokenServed") == [google, google]  # the fresh one, the refreshed one
    assert Emitted.counts(blobs, "AccessTokenRefreshed") == [google]
    assert Emitted.counts(blobs, "ReauthRequired") == [google]


def test_a_cold_start_is_counted_once_per_container_by_function_name(emitted, monkeypatch):
    cold_start_both_functions(monkeypatch)
    assert Emitted.counts(emitted.read(), "ColdStart") == [
        {"service": SERVICE, "function_name": "InitiateFunction"},
        {"service": SERVICE, "function_name": "CallbackFunction"},
    ]


def test_webhook_attempts_are_counted_delivered_retried_and_dead_lettered_with_the_delivered_latency(
    emitted, hooked_receiver, dynamodb, environment, provider_server
):
    streams = Streams(dynamodb)
    client, key, receiver = hooked_receiver
    service = [{"service": SERVICE}]
    # When the delivery function's first attempt reaches a receiver answering 200
    receiver.status = 200
    webhook_connect(provider_server, key, f"metrics-{time.time_ns()}", sub="metrics-first")
    streams.pump()
    first = emitted.read()
    # Then one delivery is counted, with its HTTP attempt's latency, and nothing retried or given up
    assert (Emitted.total(first, "WebhookDelivered"), Emitted.total(first, "WebhookRetried")) == (1, 0)
    assert Emitted.total(first, "WebhookDeadLettered") == 0
    (latency,) = Emitted.values(first, "WebhookLatency")
    assert latency > 0
    assert all(
        Emitted.counts(first, m) and set(map(str, Emitted.counts(first, m))) == set(map(str, service))
        for m in ("WebhookDelivered", "WebhookRetried", "WebhookDeadLettered", "WebhookLatency")
    )
    units = {m["Name"]: m["Unit"] for b in first for d in b["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert (units["WebhookLatency"], units["WebhookDelivered"]) == ("Milliseconds", "Count")
    # When the receiver answers 503: the event is due again, counted as retried, without a latency
    receiver.status = 503
    webhook_connect(provider_server, key, f"metrics-{time.time_ns()}", sub="metrics-second")
    streams.pump()
    second = emitted.read()
    assert (Emitted.total(second, "WebhookDelivered"), Emitted.total(second, "WebhookRetried")) == (0, 1)
    assert Emitted.values(second, "WebhookLatency") == []
    # When its first attempt was a day ago and the retry function's attempt fails too: dead-lettered
    (failed,) = [d for d in deliveries_of(client.clientId) if d.status == "PENDING"]
    storage = _retried_for_the_last_time(failed.deliveryId)
    third = emitted.read()
    assert storage.webhook_deliveries.get(failed.deliveryId).status == "DEAD"
    assert Emitted.total(third, "WebhookDeadLettered") >= 1  # others' leftover due events may be in the run too
    assert Emitted.counts(third, "WebhookDeadLettered") == service
    # When the receiver is back and the dead letter is redriven, the retry function counts its delivery
    receiver.status = 200
    assert deployment.current().storage.webhook_deliveries.redrive(failed.deliveryId, int(time.time()))
    invoke("WebhookRetryFunction", RETRY_SCHEDULED_EVENT)
    fourth = emitted.read()
    assert Emitted.total(fourth, "WebhookDelivered") >= 1 and Emitted.values(fourth, "WebhookLatency")
    assert storage.webhook_deliveries.get(failed.deliveryId).status == "DELIVERED"


def test_a_keepalive_run_counts_due_refreshed_failed_and_reauth_required_by_service(
    emitted, provider_server, monkeypatch, dynamodb, environment
):
    run_keepalive(provider_server, monkeypatch, dynamodb, environment)
    blobs = emitted.read()
    totals = {
        m: Emitted.total(blobs, m)
        for m in ("KeepAliveDue", "KeepAliveRefreshed", "KeepAliveFailed", "KeepAliveReauthRequired")
    }
    assert totals == {"KeepAliveDue": 3, "KeepAliveRefreshed": 1, "KeepAliveFailed": 1, "KeepAliveReauthRequired": 1}
    for metric in totals:
        assert Emitted.counts(blobs, metric) == [{"service": SERVICE}]


# --- one attempt id on every log line --------------------------------------------------------------------


def test_every_log_line_of_an_attempt_carries_its_id_from_initiate_through_the_hop_to_the_callback(
    environment, provider_server, monkeypatch, log_lines
):
    monkeypatch.setenv("BROWSER_BINDING", "true")
    deployment.reset()
    lines_so_far = 0

    def lines_of(step: Callable[[], Any]) -> list[dict[str, Any]]:
        nonlocal lines_so_far
        step()
        lines = log_lines().splitlines()
        new, lines_so_far = lines[lines_so_far:], len(lines)
        return [json.loads(line) for line in new]

    # Given an attempt started through the API, whose id is its state hash's first 16 hex characters
    answer: dict[str, Any] = {}
    initiate = lines_of(lambda: answer.update(invoke("InitiateFunction", load_event("initiate-wix.json"))))
    state = _query(json.loads(answer["body"])["oauthUrl"])["attempt"]
    attempt_id = observability.attempt_id(hash_secret(state))
    # When the browser takes the start hop, then comes back from Google
    started: dict[str, Any] = {}
    opened = lines_of(lambda: started.update(hop(state)))
    nonce = _query(started["headers"]["Location"])["nonce"]
    cookie = started["cookies"][0].split(";")[0]
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, nonce)))
    back: dict[str, Any] = {}
    finished = lines_of(lambda: back.update(callback({"state": state, "code": "c"}, cookies=[cookie])))
    connection_id = _query(back["headers"]["Location"])["connectionId"]
    # Then every line of each request carries the attempt id, as attemptId and as the correlation id
    for request in (initiate, opened, finished):
        assert request
        for line in request:
            assert (line.get("attemptId"), line.get("correlation_id")) == (attempt_id, attempt_id), line
            assert line["requestId"] not in ("", attempt_id), line  # API Gateway's, the access log's key
    # And the callback's outcome line names the connection, with the attempt's provider, dialect and outcome
    outcome = next(line for line in finished if line["message"] == "authorization finished")
    assert (outcome["connectionId"], outcome["providerId"], outcome["dialect"], outcome["outcome"]) == (
        connection_id,
        "google",
        "wix",
        "connected",
    )
    assert outcome["reason"] == "none" and 0 <= outcome["attemptSeconds"] < 60
    # And nothing carries the state itself
    assert state not in log_lines()


# --- template.yaml names nothing that is not emitted -------------------------------------------------------


def test_every_metric_an_alarm_or_the_dashboard_names_is_emitted_with_that_dimension_set(
    emitted, provider_server, storage, monkeypatch, hooked_receiver, dynamodb, environment
):
    # Given every flow that counts something
    connect(provider_server, "google", Dialect.WIX)
    connect(provider_server, "microsoft", Dialect.TEAMUP)
    for how in ("token_endpoint_down", "server_error", "access_denied"):
        fail(provider_server, how)
    serve_refresh_and_lose_access_tokens(provider_server)
    cold_start_both_functions(monkeypatch)
    deliver_retry_and_dead_letter_webhooks(hooked_receiver, Streams(dynamodb), provider_server)
    run_keepalive(provider_server, monkeypatch, dynamodb, environment)
    open_and_expire_start_links(storage, monkeypatch)  # last: it turns browser binding on
    emitted.read()
    # When the template's alarms and dashboard are read
    template = load_template()
    references = alarm_references(template) + dashboard_references(dashboard_body(template))
    ours = [ref for ref in references if ref.namespace == "CalendarConnect"]
    assert len({ref.name for ref in ours}) >= 16
    # Then each of our metrics they name was counted under that exact dimension set, with the values they read
    function_names = {f"<{name}>": name for name in ("InitiateFunction", "CallbackFunction")}  # as Lambda names them
    missing = [ref for ref in ours if not emitted.covers(ref, function_names)]
    assert not missing, "\n".join(f"{ref.where}: {ref.name} {dict(ref.dimensions)}" for ref in missing)
