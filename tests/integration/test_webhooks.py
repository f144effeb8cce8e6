"""Webhooks end to end at the handler level: registration through InitiateFunction, events from real flows
(callback, reconnect, failure, TTL expiry, disconnect, invalid_grant) read from DynamoDB Local's streams and
handed to WebhookDeliveryFunction as the event source mapping would, delivered to a receiver on 127.0.0.1 that
verifies every signature with the `standardwebhooks` package."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
from standardwebhooks import Webhook

from calendar_connect import deployment, webhook_delivery
from calendar_connect.observability import attempt_id
from calendar_connect.secret_hashes import hash_secret
from calendar_connect.webhook_delivery import RETRY_WINDOW_SECONDS, retry_due
from local.dynamodb import LOCAL_CREDENTIALS, DynamoDBLocal
from local.streams import StreamReader
from local.template import load_template, stream_mappings
from scripts.webhooks import main as webhooks_command
from tests.conftest import GOOGLE_CLIENT_ID
from tests.integration.test_connections import CONNECTION_FIELDS, access_token, seed
from tests.support.lambda_runtime import EXAMPLE_PREFIX, invoke, json_body, load_event
from tests.support.provider_server import Answer, ProviderServer, google_tokens
from tests.support.webhook_receiver import WebhookReceiver, verifies

RETURN_URL = EXAMPLE_PREFIX + "done"


# --- the management API ---------------------------------------------------------------------------------------


def webhook_call(name: str, api_key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["headers"]["authorization"] = f"Bearer {api_key}"
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-length"] = str(len(event["body"]))
    return invoke("InitiateFunction", event)


def register(api_key: str, url: str) -> dict[str, Any]:
    return webhook_call("webhook-put.json", api_key, {"url": url})


def error_code(answer: dict[str, Any]) -> tuple[int, str]:
    return answer["statusCode"], json_body(answer)["details"]["applicationError"]["code"]


# --- the flows that make events ----------------------------------------------------------------------------------


def start(api_key: str, schedule: str, provider: str = "google") -> dict[str, str]:
    event = load_event("initiate-wix.json")
    event["headers"]["authorization"] = f"Bearer {api_key}"
    event["body"] = json.dumps({"providerId": provider, "scheduleId": schedule, "redirectUrl": RETURN_URL})
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 200, answer["body"]
    return {k: v[0] for k, v in parse_qs(urlsplit(json_body(answer)["oauthUrl"]).query).items()}


def callback(query: dict[str, str]) -> dict[str, str]:
    event = load_event("callback-success.json")
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query
    answer = invoke("CallbackFunction", event)
    assert answer["statusCode"] == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(answer["headers"]["Location"]).query).items()}


def connect(provider_server: ProviderServer, api_key: str, schedule: str, sub: str = "webhook-person") -> str:
    """Initiate, then the provider's redirect with a code; the connection id the browser comes back with."""
    params = start(api_key, schedule)
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, params.get("nonce"), sub=sub)))
    return callback({"state": params["state"], "code": "webhook-code"})["connectionId"]


# --- fixtures ----------------------------------------------------------------------------------------------------


class Streams:
    """The template's stream mappings over DynamoDB Local, from now on, invoking WebhookDeliveryFunction."""

    def __init__(self, dynamodb: DynamoDBLocal) -> None:
        streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb.endpoint, **LOCAL_CREDENTIALS)
        self.failures: list[dict[str, Any]] = []
        self.readers = [
            StreamReader(
                dynamodb.client(),
                streams,
                mapping,
                lambda event, name=mapping.function: invoke(name, event),
                self.failures.append,
                starting_position="LATEST",
            )
            for mapping in stream_mappings(load_template())
        ]

    def pump(self) -> None:
        """Hand on every record written so far (DynamoDB Local's streams have them as soon as the write returns)."""
        while sum(reader.poll() for reader in self.readers):
            pass

    def pump_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("the stream did not bring the expected records")
            self.pump()
            time.sleep(0.2)


@pytest.fixture
def private_allowed(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_WEBHOOKS", "true")  # the receiver is on 127.0.0.1
    deployment.reset()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def streams(dynamodb: DynamoDBLocal, environment: dict[str, str]) -> Streams:
    return Streams(dynamodb)


@pytest.fixture
def hooked(private_allowed: None, api_client: tuple[Any, str], receiver: WebhookReceiver) -> Iterator[tuple[Any, str]]:
    """A fresh API client whose webhook is the receiver (its secret handed to the receiver)."""
    client, key = api_client
    answer = register(key, receiver.url)
    assert answer["statusCode"] == 200, answer["body"]
    receiver.secret = json_body(answer)["secret"]
    yield client, key
    webhook_call("webhook-delete.json", key)


def deliveries_of(client_id: str) -> list[Any]:
    table = deployment.current().storage.webhook_deliveries
    items = deployment.current().storage.client.scan(TableName=table.name, ConsistentRead=True)["Items"]
    return [table.get(i["deliveryId"]["S"]) for i in items if i["clientId"]["S"] == client_id]


# --- registration ------------------------------------------------------------------------------------------------


def test_register_read_rotate_and_remove_a_webhook(private_allowed, api_client, dynamodb, environment):
    client, key = api_client
    # When a webhook is registered
    created = register(key, "http://127.0.0.1:9/hooks")
    # Then its secret is answered once, in the Standard Webhooks form, and nothing is cached
    assert created["statusCode"] == 200
    assert created["headers"]["Cache-Control"] == "no-store"
    secret = json_body(created)["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert json_body(created)["url"] == "http://127.0.0.1:9/hooks"
    # And it is stored sealed, never in the clear
    item = dynamodb.client().get_item(
        TableName=environment["API_CLIENTS_TABLE"], Key={"clientId": {"S": client.clientId}}
    )
    assert secret not in json.dumps(item["Item"], default=str)
    assert secret[6:] not in base64.b64encode(item["Item"]["webhookSecrets"]["B"]).decode()
    # When it is read, or its URL changed, no secret is answered
    read = webhook_call("webhook-get.json", key)
    assert (read["statusCode"], json_body(read)) == (200, {"url": "http://127.0.0.1:9/hooks"})
    assert read["headers"]["Cache-Control"] == "no-store"
    changed = register(key, "http://localhost:9/other")
    assert (changed["statusCode"], json_body(changed)) == (200, {"url": "http://localhost:9/other"})
    # When the secret is rotated, Then a new one is answered
    rotated = webhook_call("webhook-rotate-secret.json", key)
    assert rotated["statusCode"] == 200 and rotated["headers"]["Cache-Control"] == "no-store"
    assert json_body(rotated)["secret"].startswith("whsec_") and json_body(rotated)["secret"] != secret
    # When it is removed, Then it is gone: reading and rotating answer 404, removing again is harmless
    removed = webhook_call("webhook-delete.json", key)
    assert (removed["statusCode"], json_body(removed)) == (200, {"deleted": True})
    assert error_code(webhook_call("webhook-get.json", key)) == (404, "NOT_FOUND")
    assert error_code(webhook_call("webhook-rotate-secret.json", key)) == (404, "NOT_FOUND")
    assert json_body(webhook_call("webhook-delete.json", key)) == {"deleted": False}


def test_the_webhook_routes_need_a_key(environment):
    for name in ("webhook-put.json", "webhook-get.json", "webhook-delete.json", "webhook-rotate-secret.json"):
        event = load_event(name)
        del event["headers"]["authorization"]
        answer = invoke("InitiateFunction", event)
        assert answer["statusCode"] == 401, name
        assert answer["headers"]["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://localhost:9/hooks",  # a name: refused for what it resolves to
        "https://10.0.0.5/hooks",
        "https://192.168.1.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hooks",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://0.0.0.0/hooks",
        "http://93.184.215.14/hooks",  # public, but http outside localhost
        "https://user:pw@93.184.215.14/hooks",
        "https://93.184.215.14/hooks#fragment",
        "ftp://93.184.215.14/hooks",
        "/relative/hooks",
        "https://no-such-host.invalid/hooks",
    ],
)
def test_urls_that_are_not_public_https_are_refused(environment, api_client, url):
    _, key = api_client
    answer = register(key, url)
    assert error_code(answer) == (400, "INVALID_ARGUMENT")
    assert json_body(answer)["details"]["validationError"]["fieldViolations"][0]["field"] == "url"
    assert error_code(webhook_call("webhook-get.json", key)) == (404, "NOT_FOUND")  # nothing stored


def test_a_public_https_url_is_accepted(environment, api_client):
    _, key = api_client
    answer = register(key, "https://93.184.215.14/hooks")  # an address literal: no DNS needed here
    assert answer["statusCode"] == 200, answer["body"]


def test_sealed_secrets_open_only_for_their_client(private_allowed, api_client, dynamodb, environment):
    from calendar_connect.token_cipher import DecryptionError
    from calendar_connect.webhooks import open_secrets

    client, key = api_client
    register(key, "http://127.0.0.1:9/hooks")
    record = deployment.current().storage.api_clients.get_webhook(client.clientId)
    assert record is not None
    with pytest.raises(DecryptionError):
        open_secrets(deployment.current(), record.model_copy(update={"clientId": "someoneelse"}))


# --- events from real flows ------------------------------------------------------------------------------------


def test_every_event_type_from_real_flows_is_delivered_signed(
    hooked, receiver, streams, provider_server, dynamodb, environment, log_lines
):
    client, key = hooked
    schedule = f"hooks-{time.time_ns()}"
    # connection.created: an approved callback
    connection_id = connect(provider_server, key, schedule)
    streams.pump()
    (created,) = receiver.wait_for("connection.created")
    # connection.updated: the same account connected again, same id
    assert connect(provider_server, key, schedule) == connection_id
    streams.pump()
    (updated,) = receiver.wait_for("connection.updated")
    # authorization.failed: the person denies consent
    denied = start(key, schedule)
    assert callback({"state": denied["state"], "error": "access_denied"})["reason"] == "access_denied"
    streams.pump()
    (failed,) = receiver.wait_for("authorization.failed")
    # connection.disconnected: the DELETE route
    event = load_event("connection-delete.json")
    event["headers"]["authorization"] = f"Bearer {key}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/external-calendars/connections/{connection_id}"
    event["pathParameters"] = {"connectionId": connection_id}
    assert invoke("InitiateFunction", event)["statusCode"] == 200
    streams.pump()
    (disconnected,) = receiver.wait_for("connection.disconnected")
    # connection.reauth_required: the access-token route meets invalid_grant
    seeded = seed(client.clientId, schedule_id=schedule, expires_in=60)
    provider_server.script("/google/token", Answer(400, {"error": "invalid_grant"}))
    assert access_token(key, seeded.connection_id)["statusCode"] == 428
    streams.pump()
    (reauth,) = receiver.wait_for("connection.reauth_required")

    # Then each was signed as Standard Webhooks says, and verified by the standardwebhooks package
    everything = receiver.events()
    assert all(r.verified for r in everything)
    assert len({r.webhook_id for r in everything}) == len(everything)
    assert streams.failures == []
    # And carries the Connection as the API shows it, nothing more
    for received in (created, updated, disconnected, reauth):
        body = received.event
        assert set(body) == {"type", "timestamp", "data"}
        assert set(body["data"]) == CONNECTION_FIELDS
    assert created.event["data"]["connectionId"] == updated.event["data"]["connectionId"] == connection_id
    assert created.event["data"]["status"] == updated.event["data"]["status"] == "CONNECTED"
    assert disconnected.event["data"]["status"] == "DISCONNECTED"
    assert reauth.event["data"] | {"status": "REAUTH_REQUIRED"} == reauth.event["data"]
    assert reauth.event["data"]["connectionId"] == seeded.connection_id
    # And the failure names the attempt without anything that could finish it
    data = failed.event["data"]
    assert data == {
        "attemptId": attempt_id(hash_secret(denied["state"])),
        "providerId": "google",
        "scheduleId": schedule,
        "error": "reject",
        "reason": "access_denied",
    }
    assert denied["state"] not in failed.body and hash_secret(denied["state"]) not in failed.body
    # And no token, code, state or secret is in any payload or log line
    exposed = "\n".join(r.body + json.dumps(r.headers) for r in everything) + log_lines()
    tokens = google_tokens(GOOGLE_CLIENT_ID, None)
    for secret in (
        tokens["access_token"],
        tokens.get("refresh_token", "never-present"),
        seeded.tokens.access_token,
        seeded.tokens.refresh_token,
        receiver.secret,
        receiver.secret[6:],
        key,
        denied["state"],
        "webhook-code",
    ):
        assert secret and secret not in exposed


def test_a_token_refresh_makes_no_event(hooked, receiver, streams, provider_server):
    client, key = hooked
    seeded = seed(client.clientId, schedule_id=f"refresh-{time.time_ns()}", expires_in=60)
    provider_server.script("/google/token", Answer(200, {"access_token": "fresh", "expires_in": 3599}))
    assert access_token(key, seeded.connection_id)["statusCode"] == 200
    streams.pump()
    assert [r.event["type"] for r in receiver.events()] == ["connection.created"]  # the seed's, and nothing else


def test_an_attempt_that_expires_without_a_callback_fails_by_ttl(hooked, receiver, streams, dynamodb, environment):
    _, key = hooked
    schedule = f"expiry-{time.time_ns()}"
    params = start(key, schedule)
    # Given the attempt's time is up (its TTL attribute in the past), and no callback came
    dynamodb.client().update_item(
        TableName=environment["PENDING_TABLE"],
        Key={"stateHash": {"S": hash_secret(params["state"])}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 5)}},
    )
    # When DynamoDB's TTL deletes it (DynamoDB Local's own TTL sweep, on its stream as a service deletion)
    streams.pump_until(lambda: bool(receiver.events("authorization.failed")), timeout=120)
    # Then the client hears the attempt failed as expired
    (failed,) = receiver.events("authorization.failed")
    assert failed.verified
    assert failed.event["data"] == {
        "attemptId": attempt_id(hash_secret(params["state"])),
        "providerId": "google",
        "scheduleId": schedule,
        "error": "internal",
        "reason": "expired",
    }


def test_a_record_handed_on_twice_is_one_delivery(hooked, receiver, streams, provider_server, dynamodb):
    _, key = hooked
    captured: list[dict[str, Any]] = []
    for reader in streams.readers:
        original = reader._invoke
        reader._invoke = lambda event, original=original: captured.append(event) or original(event)
    connect(provider_server, key, f"twice-{time.time_ns()}")
    streams.pump()
    for event in captured:
        invoke("WebhookDeliveryFunction", event)  # the stream hands a batch on again (e.g. after a timeout)
    assert len(receiver.events("connection.created")) == 1


# --- delivery: retries, dead letters, rotation, private addresses -----------------------------------------------


def test_events_wait_while_the_receiver_is_down_and_arrive_with_their_ids(hooked, receiver, streams, provider_server):
    client, key = hooked
    schedule = f"down-{time.time_ns()}"
    # Given a receiver that fails (503) the first attempts
    receiver.status = 503
    connection_id = connect(provider_server, key, schedule)
    denied = start(key, schedule)
    callback({"state": denied["state"], "error": "access_denied"})
    streams.pump()
    first_ids = sorted(r.webhook_id for r in receiver.events())
    assert len(first_ids) == 2
    # And then is off the network for a while
    receiver.stop()
    now = int(time.time())
    assert retry_due(deployment.current(), now=now + 31).delivered == 0
    pending = deliveries_of(client.clientId)
    assert {d.status for d in pending} == {"PENDING"} and {d.attempts for d in pending} == {2}
    # When it comes back
    receiver.status = 200
    receiver.start()
    run = retry_due(deployment.current(), now=now + 31 + 61)
    # Then every event arrives, with the webhook-id it had on its first attempt
    assert run.delivered == 2
    delivered = [r for r in receiver.events() if r.webhook_id in first_ids and r is not None]
    assert sorted(r.webhook_id for r in receiver.received[2:]) == first_ids
    assert all(r.verified for r in delivered)
    assert {d.status for d in deliveries_of(client.clientId)} == {"DELIVERED"}
    assert connection_id in json.dumps([r.event for r in receiver.received])


def test_an_event_the_receiver_never_takes_ends_in_the_dead_letters_and_a_redrive_delivers_it(
    hooked, receiver, streams, provider_server, environment, dynamodb, capsys
):
    client, key = hooked
    receiver.status = 500
    connect(provider_server, key, f"dead-{time.time_ns()}")
    streams.pump()
    (delivery,) = deliveries_of(client.clientId)
    first = delivery.firstAttemptAt
    # When every retry fails, time driven forward to each next attempt
    gaps: list[int] = []
    now = first
    while delivery.status == "PENDING":
        gaps.append(delivery.nextAttemptAt - now)
        now = delivery.nextAttemptAt
        retry_due(deployment.current(), now=now)
        delivery = deployment.current().storage.webhook_deliveries.get(delivery.deliveryId)
    # Then it was retried with growing delays for at least 24 hours, and is kept as a dead letter with its event
    assert gaps[:5] == [30, 60, 120, 240, 480] and max(gaps) == 3600
    assert delivery.status == "DEAD" and now - first >= RETRY_WINDOW_SECONDS
    assert json.loads(delivery.body)["type"] == "connection.created"
    assert delivery.lastError == "HTTP 500"
    assert len({r.webhook_id for r in receiver.events()}) == 1
    args = ["--table", environment["WEBHOOK_DELIVERIES_TABLE"], "--endpoint", dynamodb.endpoint]
    assert webhooks_command([*args, "dead-letters"]) == 0
    assert delivery.deliveryId in capsys.readouterr().out
    # When the receiver is fixed and the dead letters are redriven
    receiver.status = 200
    assert webhooks_command([*args, "redrive"]) == 0
    assert retry_due(deployment.current()).delivered >= 1
    # Then the event arrives, with its own webhook-id, verified
    last = receiver.received[-1]
    assert (last.webhook_id, last.verified) == (delivery.deliveryId, True)
    assert deployment.current().storage.webhook_deliveries.get(delivery.deliveryId).status == "DELIVERED"


def test_after_a_rotation_both_secrets_sign_for_24_hours_then_only_the_new_one(
    hooked, receiver, streams, provider_server
):
    _client, key = hooked
    old = receiver.secret
    new = json_body(webhook_call("webhook-rotate-secret.json", key))["secret"]
    # During the overlap: two signatures, each verifies with its secret
    connect(provider_server, key, f"rotate-{time.time_ns()}")
    streams.pump()
    (during,) = receiver.events()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verifies(old, during) and verifies(new, during)
    # After 24 hours: only the new secret signs
    receiver.status = 500
    denied = start(key, f"rotate-{time.time_ns()}")
    callback({"state": denied["state"], "error": "access_denied"})
    streams.pump()
    receiver.status = 200
    assert retry_due(deployment.current(), now=int(time.time()) + 24 * 3600 + 1).delivered >= 1
    after = receiver.received[-1]
    assert after.event["type"] == "authorization.failed"
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, after) and not verifies(old, after)
    Webhook(new).verify(after.body, after.headers)


def test_a_private_address_is_refused_again_at_delivery(hooked, receiver, streams, provider_server, monkeypatch):
    client, key = hooked  # registered while private addresses were allowed
    # When the deployment no longer allows them (as when a public name starts resolving to a private address)
    monkeypatch.setenv("ALLOW_PRIVATE_WEBHOOKS", "false")
    deployment.reset()
    connect(provider_server, key, f"private-{time.time_ns()}")
    streams.pump()
    # Then nothing is sent there, and the event waits, its failure said
    assert receiver.events() == []
    (delivery,) = deliveries_of(client.clientId)
    assert delivery.status == "PENDING" and delivery.lastError.startswith("refused: resolves to a loopback")


def test_redirects_are_not_followed(hooked, receiver, streams, provider_server):
    client, key = hooked
    receiver.status = 307  # werkzeug sends no Location: a redirect answer is a failure either way
    connect(provider_server, key, f"redirect-{time.time_ns()}")
    streams.pump()
    (delivery,) = deliveries_of(client.clientId)
    assert delivery.lastError == "HTTP 307" and len(receiver.events()) == 1


def test_backoff_grows_then_caps() -> None:
    assert [webhook_delivery.backoff_seconds(n) for n in (1, 2, 3, 4, 8, 20)] == [30, 60, 120, 240, 3600, 3600]


def _resolver(*addresses: str) -> Callable[..., list[Any]]:
    """What the system resolver would answer for a name we do not control (no DNS here): the edge, faked."""
    import socket

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return getaddrinfo


def test_a_name_that_starts_resolving_to_a_private_address_is_refused_at_delivery(
    environment, api_client, streams, provider_server, monkeypatch
):
    import calendar_connect.webhook_urls as webhook_urls

    client, key = api_client
    # Given a name that resolves to a public address at registration
    with monkeypatch.context() as patched:  # socket.getaddrinfo is everyone's: patched only around our calls
        patched.setattr(webhook_urls.socket, "getaddrinfo", _resolver("93.184.215.14"))
        assert register(key, "https://hooks.rebinding.test/calendar")["statusCode"] == 200
    connect(provider_server, key, f"rebinding-{time.time_ns()}")
    # When it resolves to a private one by the time the event is delivered (DNS rebinding)
    with monkeypatch.context() as patched:
        patched.setattr(webhook_urls.socket, "getaddrinfo", _resolver("93.184.215.14", "10.0.0.7"))
        streams.pump()
    # Then nothing is sent, and the event waits with the reason
    (delivery,) = deliveries_of(client.clientId)
    assert delivery.status == "PENDING" and delivery.attempts == 1
    assert delivery.lastError.startswith("refused: resolves to a loopback, private")
    webhook_call("webhook-delete.json", key)


def test_the_next_checked_address_is_tried_when_one_refuses_to_connect(
    hooked, receiver, streams, provider_server, monkeypatch
):
    import calendar_connect.webhook_urls as webhook_urls

    _, key = hooked
    # Given a name with two addresses, the first of which takes no connection (the receiver is on 127.0.0.1 only)
    register(key, f"http://localhost:{receiver.port}/hooks")
    connect(provider_server, key, f"fallback-{time.time_ns()}")
    with monkeypatch.context() as patched:  # socket.getaddrinfo is everyone's: patched only around the delivery
        patched.setattr(webhook_urls.socket, "getaddrinfo", _resolver("127.0.0.9", "127.0.0.1"))
        streams.pump()
    (created,) = receiver.wait_for("connection.created")
    assert created.verified and created.headers["host"] == f"localhost:{receiver.port}"
