"""Webhooks through `python -m local.runner`: the tables' streams read from DynamoDB Local, the delivery and retry
functions invoked as Lambda would, events signed and verified at a receiver with the `standardwebhooks` package.

The sandbox's consent is driven over HTTP (its form posted as the browser would): what is under test here is
what happens after the redirect.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from calendar_connect.webhooks import new_secret
from tests.e2e.conftest import Runner, query_of, start_runner, wait_until
from tests.support.webhook_receiver import WebhookReceiver

# Attempts expire a minute after initiate here, so one can expire within a test (DynamoDB Local's TTL deletes it).
SHORT_ATTEMPT_SECONDS = 60  # the shortest a provider entry allows


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(new_secret()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[Runner]:
    directory = tmp_path_factory.mktemp("runner")
    providers = Path(directory) / "providers.yaml"
    providers.write_text(f"sandbox:\n  timeout_seconds: {SHORT_ATTEMPT_SECONDS}\n")
    running = start_runner(
        directory,
        LOCAL_WEBHOOK_URL=receiver.url,
        LOCAL_WEBHOOK_SECRET=receiver.secret,
        PROVIDERS_FILE=str(providers),
    )
    yield running
    assert running.stop() == 0, running.output()


def initiate(runner: Runner, schedule_id: str) -> str:
    with runner.api() as api:
        answer = api.post(
            "/v2/external-calendars/connections/connect-by-oauth",
            json={"providerId": "sandbox", "scheduleId": schedule_id, "redirectUrl": runner.base_url + "/"},
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["oauthUrl"])


def consent(runner: Runner, schedule_id: str, decision: str) -> dict[str, list[str]]:
    """The browser's way through the start hop, the sandbox's consent form and the callback; the outcome query."""
    with httpx.Client(timeout=30) as browser:
        to_provider = browser.get(initiate(runner, schedule_id))  # binds the attempt to this client's cookie jar
        assert to_provider.status_code == 302
        form = browser.get(to_provider.headers["location"])
        request_id = re.search(r'name="request" value="([^"]+)"', form.text)
        assert request_id, form.text
        back = browser.post(
            runner.sandbox_url + "/authorize/decision",
            data={"request": request_id.group(1), "decision": decision, "email": "ada@sandbox.test"},
        )
        home = browser.get(back.headers["location"])
        assert home.status_code == 302
        return query_of(home.headers["location"])


def test_every_event_of_a_connection_arrives_signed(runner: Runner, receiver: WebhookReceiver) -> None:
    schedule_id = f"hooks-{secrets.token_hex(4)}"
    # connection.created
    connection_id = consent(runner, schedule_id, "approve")["connectionId"][0]
    (created,) = receiver.wait_for("connection.created", timeout=60)
    assert created.verified
    assert created.event["data"]["connectionId"] == connection_id
    assert created.event["data"]["status"] == "CONNECTED"
    # connection.updated: the same account again
    assert consent(runner, schedule_id, "approve")["connectionId"] == [connection_id]
    (updated,) = receiver.wait_for("connection.updated", timeout=60)
    # authorization.failed: consent denied
    assert consent(runner, schedule_id, "deny")["reason"] == ["access_denied"]
    (denied,) = receiver.wait_for("authorization.failed", timeout=60)
    assert (denied.event["data"]["error"], denied.event["data"]["reason"]) == ("reject", "access_denied")
    # connection.disconnected
    with runner.api() as api:
        assert api.delete(f"/v2/external-calendars/connections/{connection_id}").status_code == 200
    (disconnected,) = receiver.wait_for("connection.disconnected", timeout=60)
    assert disconnected.event["data"]["status"] == "DISCONNECTED"
    for received in (created, updated, denied, disconnected):
        assert received.verified
        assert set(received.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
    # And the runner said so, one line each
    wait_until(lambda: "webhook delivered: connection.disconnected" in runner.output(), 30, "the console line")


def test_an_attempt_nobody_finishes_fails_as_expired(runner: Runner, receiver: WebhookReceiver) -> None:
    schedule_id = f"expiry-{secrets.token_hex(4)}"
    initiate(runner, schedule_id)
    # DynamoDB Local's TTL deletes the attempt some seconds after it expires; its stream record is handed on
    wait_until(
        lambda: any(r.event["data"].get("scheduleId") == schedule_id for r in receiver.events("authorization.failed")),
        SHORT_ATTEMPT_SECONDS + 90,
        "the expiry's authorization.failed",
        interval=0.5,
    )
    (expired,) = [r for r in receiver.events("authorization.failed") if r.event["data"]["scheduleId"] == schedule_id]
    assert expired.verified
    assert (expired.event["data"]["error"], expired.event["data"]["reason"]) == ("internal", "expired")


@pytest.fixture(scope="module")
def demo_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    running = start_runner(tmp_path_factory.mktemp("demo-runner"))
    yield running
    assert running.stop() == 0, running.output()


def test_the_demo_site_receives_and_shows_its_own_deliveries(demo_runner: Runner) -> None:
    # Given the runner's defaults: the demo site registered its own receiver through the API
    with demo_runner.api() as api:
        hook = api.get("/v2/external-calendars/webhook")
    assert hook.status_code == 200 and hook.json()["url"] == demo_runner.base_url + "/demo/webhooks"
    # When a calendar is connected
    connection_id = consent(demo_runner, f"demo-{secrets.token_hex(4)}", "approve")["connectionId"][0]

    # Then the demo's page lists the verified delivery
    def shown() -> bool:
        page = httpx.get(demo_runner.base_url + "/demo/webhooks", timeout=10).text
        return "connection.created" in page and connection_id in page

    wait_until(shown, 60, "the delivery on the demo page")
    assert "signature verified" in demo_runner.output()
    # And a delivery that is not signed with its secret is refused there
    forged = httpx.post(
        demo_runner.base_url + "/demo/webhooks",
        content=b'{"type":"connection.created"}',
        headers={"webhook-id": "msg_x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
    )
    assert forged.status_code == 400
