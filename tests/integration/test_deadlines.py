"""Outages against the invocation's deadline: a dead or hanging DynamoDB, a dead or hanging token endpoint.

Each case invokes a handler with a LambdaContext whose remaining time is short, as Lambda hands one over, and
asserts what the function answers and that it answered with time left: Lambda kills a function at zero, and
then API Gateway answers a bare 503 of its own. Faults are real sockets on 127.0.0.1: a port nothing listens
on (connections refused) and a server that accepts and never answers (tests/support/faults.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calendar_connect import deployment, oauth_client
from local.gateway import LambdaContext
from tests.integration.test_callback import failed, start, tokens_for
from tests.support.faults import SilentServer, refused_url
from tests.support.lambda_runtime import MEMORY_MB, handler_module, invoke, json_body, load_event
from tests.support.provider_server import Answer

pytestmark = [pytest.mark.usefixtures("example_client"), pytest.mark.timeout(120)]
# Short per-attempt timeouts, so that a few seconds of remaining time hold several attempts.
STORAGE_TIMEOUTS = {"STORAGE_CONNECT_TIMEOUT": "0.2", "STORAGE_READ_TIMEOUT": "0.3"}
MANAGEMENT_EVENTS = [
    "initiate-wix.json",
    "initiate-teamup-json.json",
    "providers-list.json",
    "connections-list.json",
    "connection-get.json",
    "connection-access-token.json",
]


def context(function_name: str, seconds: float) -> LambdaContext:
    """The context of an invocation with `seconds` left before Lambda stops it, in a warm container: the handler
    imported and the container's clients built, as a cold start's init phase does before Lambda counts time."""
    handler_module(function_name)
    here = deployment.current()
    here.storage  # noqa: B018 - builds the DynamoDB client
    here.providers  # noqa: B018 - reads the provider files
    oauth_client.http_client()
    return LambdaContext(function_name, MEMORY_MB, seconds)  # type: ignore[arg-type]


def assert_unavailable(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 503, answer["body"]
    assert int(answer["headers"]["Retry-After"]) > 0
    assert json_body(answer)["details"]["applicationError"]["code"] == "UNAVAILABLE"


@pytest.fixture
def storage_at(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Iterator[Any]:
    """Point the functions' DynamoDB at `url` (the API clients were registered on the real one before)."""

    def point(url: str) -> None:
        for name, value in {"DYNAMODB_ENDPOINT": url, **STORAGE_TIMEOUTS}.items():
            monkeypatch.setenv(name, value)
        deployment.reset()

    yield point
    deployment.reset()


@pytest.mark.parametrize("event_file", MANAGEMENT_EVENTS)
def test_a_dead_dynamodb_answers_503_with_time_left(storage_at, event_file):
    # Given DynamoDB refuses connections (nothing listens on its port)
    storage_at(refused_url())
    # When a management call comes in with 1.5 s left
    call = context("InitiateFunction", 1.5)
    answer = invoke("InitiateFunction", load_event(event_file), call)
    # Then it answers 503 UNAVAILABLE with Retry-After, before Lambda would stop it
    assert_unavailable(answer)
    assert call.get_remaining_time_in_millis() > 0


def test_a_dead_dynamodb_gives_the_browser_the_503_page_with_time_left(storage_at):
    storage_at(refused_url())
    call = context("CallbackFunction", 1.5)
    event = load_event("callback-success.json")
    answer = invoke("CallbackFunction", event, call)
    assert answer["statusCode"] == 503 and "Location" not in answer["headers"]
    assert call.get_remaining_time_in_millis() > 0


@pytest.mark.parametrize("event_file", MANAGEMENT_EVENTS)
def test_a_hanging_dynamodb_answers_503_before_the_function_times_out(storage_at, event_file):
    with SilentServer() as silent:
        # Given DynamoDB accepts connections and never answers
        storage_at(silent.url)
        # When a management call comes in with 3 s left
        call = context("InitiateFunction", 3)
        answer = invoke("InitiateFunction", load_event(event_file), call)
        # Then DynamoDB was tried, and the function gave up on it in time to answer 503 itself
        assert silent.accepted
        assert_unavailable(answer)
        assert call.get_remaining_time_in_millis() > 0


def test_a_hanging_dynamodb_gives_the_browser_the_503_page_before_the_timeout(storage_at):
    with SilentServer() as silent:
        storage_at(silent.url)
        call = context("CallbackFunction", 3)
        answer = invoke("CallbackFunction", load_event("callback-success.json"), call)
        assert silent.accepted
        assert answer["statusCode"] == 503 and "Location" not in answer["headers"]
        assert call.get_remaining_time_in_millis() > 0


def test_no_storage_call_starts_when_the_deadline_leaves_no_room_for_it(storage_at):
    with SilentServer() as silent:
        # Given less time left than one DynamoDB attempt may take (connect + read timeouts, plus the margin)
        storage_at(silent.url)
        call = context("InitiateFunction", 0.6)
        # When a call comes in; Then it answers 503 without opening a connection it could not wait for
        assert_unavailable(invoke("InitiateFunction", load_event("initiate-wix.json"), call))
        assert not silent.accepted
        assert call.get_remaining_time_in_millis() > 0


# --- the provider's token endpoint --------------------------------------------------------------------------


@pytest.fixture
def google_token_endpoint_at(
    environment: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Move Google's token endpoint to `url` (a later PROVIDERS_FILE entry overrides the earlier one's fields)."""

    def move(url: str) -> None:
        override = tmp_path / "token-endpoint.yaml"
        override.write_text(yaml.safe_dump({"google": {"token_endpoint": url + "/token"}}))
        monkeypatch.setenv("PROVIDERS_FILE", f"{environment['PROVIDERS_FILE']},{override}")
        for name, value in STORAGE_TIMEOUTS.items():
            monkeypatch.setenv(name, value)
        deployment.reset()

    yield move
    deployment.reset()


def test_a_hanging_token_endpoint_ends_in_the_failure_redirect_before_the_timeout(google_token_endpoint_at):
    with SilentServer() as silent:
        # Given an attempt, and Google's token endpoint accepting connections and never answering
        attempt = start("google")
        google_token_endpoint_at(silent.url)
        # When the browser comes back with 6 s left
        call = context("CallbackFunction", 6)
        answer = callback_within(call, {"state": attempt.state, "code": "code-for-a-silent-provider"})
        # Then the exchange was tried, given up in time, and the browser goes home with the failure
        assert silent.accepted, answer
        assert failed(answer, attempt.dialect) == ("internal", "token_exchange_failed")
        assert call.get_remaining_time_in_millis() > 0


def test_a_dead_token_endpoint_ends_in_the_failure_redirect(google_token_endpoint_at):
    attempt = start("google")
    google_token_endpoint_at(refused_url())
    call = context("CallbackFunction", 4)
    answer = callback_within(call, {"state": attempt.state, "code": "code-for-a-dead-provider"})
    assert failed(answer, attempt.dialect) == ("internal", "token_exchange_failed")
    assert call.get_remaining_time_in_millis() > 0


def test_a_slow_but_answering_token_endpoint_still_connects(provider_server):
    # The deadline cuts calls short only when they would outlive it: a provider taking 1 s is waited for.
    attempt = start("google")
    provider_server.script("/google/token", Answer(200, tokens_for(attempt), delay=1.0))
    call = context("CallbackFunction", 20)
    query = {"state": attempt.state, "code": "code-for-a-slow-provider"}
    answer = callback_within(call, query)
    assert "connectionId=" in answer["headers"]["Location"], answer["headers"]["Location"]


def callback_within(call: LambdaContext, query: dict[str, str]) -> dict[str, Any]:
    """`callback(query)` invoked with the context `call`."""
    from urllib.parse import urlencode

    event = load_event("callback-success.json")
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query
    return invoke("CallbackFunction", event, call)


def test_the_event_files_still_answer_within_a_normal_deadline():
    # A healthy DynamoDB and the template's timeout: nothing is cut short.
    answer = invoke("InitiateFunction", load_event("initiate-wix.json"), context("InitiateFunction", 20))
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["oauthUrl"]
