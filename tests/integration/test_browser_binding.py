"""Browser binding (RFC 9700 §2.1.1) at the handler level: the start hop binds an attempt to the first browser
that opens it within START_LINK_SECONDS; only that browser may reload the hop, finish the callback, or see a
replayed outcome; another browser's callback is refused with a 403 page and leaves the attempt and the code unused."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from calendar_connect import connect_flow, deployment
from calendar_connect.connect_flow import Redirect, ReturnToWebsite
from calendar_connect.dialects import Dialect
from calendar_connect.http_answers import Page
from calendar_connect.secret_hashes import hash_secret
from tests.conftest import GOOGLE_CLIENT_ID
from tests.integration.test_callback import (
    callback,
    connected,
    event_state,
    failed,
    pending_item,
    seed,
    start,
    tokens_for,
)
from tests.support.lambda_runtime import invoke, load_event
from tests.support.provider_server import Answer, google_tokens

pytestmark = pytest.mark.usefixtures("example_client")


@pytest.fixture
def bound(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment whose attempts go through the start hop (the template's default)."""
    monkeypatch.setenv("BROWSER_BINDING", "true")
    deployment.reset()


def hop(state: str, cookies: list[str] | None = None) -> dict[str, Any]:
    """A browser opening the attempt's start link, with the cookies it holds."""
    event = load_event("start-attempt.json")
    event["queryStringParameters"] = {"attempt": state}
    event["rawQueryString"] = urlencode({"attempt": state})
    if cookies:
        event["cookies"] = cookies
    return invoke("CallbackFunction", event)


def binding_cookie(answer: dict[str, Any]) -> str:
    """The `name=value` pair a browser keeps from the hop's Set-Cookie, after checking its attributes."""
    (header,) = answer["cookies"]
    (morsel,) = SimpleCookie(header).values()
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Lax"
    # RFC 6265 §5.1.4: a path ending in "/" matches every request path it is a prefix of.
    assert "/oauth2/start".startswith(morsel["path"]) and "/oauth2/callback".startswith(morsel["path"])
    return f"{morsel.key}={morsel.value}"


def goes_to_provider(answer: dict[str, Any]) -> dict[str, str]:
    assert answer["statusCode"] == 302, answer.get("body")
    location = urlsplit(answer["headers"]["Location"])
    assert location.netloc == "accounts.google.com"
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def another_browser_page(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] == 403
    assert "Location" not in answer["headers"]
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert "another browser" in answer["body"]
    assert "connectionId" not in json.dumps(answer)


@pytest.mark.usefixtures("bound")
@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
def test_initiate_answers_the_start_hop_and_the_bound_browser_connects(dialect, provider_server, dynamodb):
    attempt = start("google", dialect)
    assert set(attempt.params) == {"attempt"}  # the oauthUrl is the start hop
    state = attempt.state
    to_provider = goes_to_provider(first := hop(state))
    assert to_provider["state"] == state
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, to_provider["nonce"])))

    assert connected(callback({"state": state, "code": "c"}, cookies=["other=1", binding_cookie(first)]), dialect)


def test_a_callback_without_the_cookie_is_403_and_leaves_the_attempt_to_the_bound_browser(
    storage, provider_server, dynamodb
):
    # Given an attempt the victim's browser has bound through the start hop
    state = "bound-then-forwarded-" + "x" * 32
    seed(storage, state, binding=True)
    cookie = binding_cookie(hop(state))
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, "event-nonce")))
    # When a browser without the cookie (or with a forged one) comes back from the provider
    another_browser_page(callback({"state": state, "code": "attackers-code"}))
    another_browser_page(callback({"state": state, "code": "attackers-code"}, cookies=[cookie.split("=")[0] + "=x"]))
    # Then its code was not redeemed and the attempt is still pending
    assert provider_server.requests_to("/google/token") == []
    item = pending_item(dynamodb, state)
    assert item is not None and item["status"]["S"] == "PENDING"
    # And the bound browser can still finish, with its own code
    assert connected(callback({"state": state, "code": "victims-code"}, cookies=[cookie]), Dialect.WIX)
    (exchange,) = provider_server.requests_to("/google/token")
    assert exchange.form["code"] == "victims-code"


def test_a_repeated_callback_replays_the_outcome_only_to_the_bound_browser(storage, provider_server, dynamodb):
    # Given an attempt finished in the bound browser
    state = "bound-and-finished-" + "x" * 32
    seed(storage, state, binding=True)
    cookie = binding_cookie(hop(state))
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, "event-nonce")))
    first = callback({"state": state, "code": "c"}, cookies=[cookie])
    connection_id = connected(first, Dialect.WIX)
    # When the same callback URL is opened again, in that browser and in another one
    again = callback({"state": state, "code": "c"}, cookies=[cookie])
    elsewhere = callback({"state": state, "code": "c"})
    # Then the bound browser gets the same redirect, and the other a page that carries no connection id
    assert again["headers"]["Location"] == first["headers"]["Location"]
    another_browser_page(elsewhere)
    assert connection_id not in elsewhere["body"]
    # And the start link, opened again, does the same
    assert hop(state, [cookie])["headers"]["Location"] == first["headers"]["Location"]
    another_browser_page(hop(state))
    assert len(provider_server.requests_to("/google/token")) == 1


def test_reloading_the_hop_in_the_bound_browser_continues_and_another_browser_is_refused(storage):
    state = event_state("start-attempt.json")
    seed(storage, state, binding=True)
    first = invoke("CallbackFunction", load_event("start-attempt.json"))
    cookie = binding_cookie(first)
    # Back or reload in the same browser: on to the provider again, with the same attempt and no new cookie
    reload = hop(state, [cookie])
    assert goes_to_provider(reload)["state"] == state
    assert reload.get("cookies", []) == []
    # Another browser opening the same link gets the one "opened in another browser" page
    another_browser_page(invoke("CallbackFunction", load_event("start-attempt.json")))
    another_browser_page(hop(state, [cookie.split("=")[0] + "=forged"]))


def test_an_unopened_start_link_opens_only_within_start_link_seconds(storage, monkeypatch):
    monkeypatch.setenv("START_LINK_SECONDS", "30")
    deployment.reset()
    current = deployment.current()
    late, in_time = "start-link-late-" + "x" * 32, "start-link-in-time-" + "x" * 32
    for state in (late, in_time):
        seed(storage, state, binding=True)
    created = current.storage.pending.get(hash_secret(late)).createdAt  # type: ignore[union-attr]

    # Past the window, nobody having opened it: back to the return URL as expired, and nothing is bound
    answer = connect_flow.open_attempt(current, late, {}, True, now=created + 30)
    assert isinstance(answer, ReturnToWebsite)  # a redirect home, so no cookie
    assert answer.outcome == {"error": "internal", "reason": "expired"}
    assert current.storage.pending.get(hash_secret(late)).browserBindingHash is None  # type: ignore[union-attr]

    # Within it, the browser is bound; once bound, it may come back for the attempt's whole timeout
    opened = connect_flow.open_attempt(current, in_time, {}, True, now=created + 29)
    assert isinstance(opened, Redirect) and opened.cookies
    cookie = opened.cookies[0].split(";")[0]
    name, value = cookie.split("=", 1)
    later = connect_flow.open_attempt(current, in_time, {name: value}, True, now=created + 500)
    assert isinstance(later, Redirect) and urlsplit(later.location).netloc == "accounts.google.com"
    elsewhere = connect_flow.open_attempt(current, in_time, {}, True, now=created + 500)
    assert isinstance(elsewhere, Page) and elsewhere.status == 403


def test_the_hop_of_an_attempt_past_its_timeout_goes_back_as_expired(storage):
    state = "hop-expired-" + "x" * 32
    seed(storage, state, binding=True, expires_in=-1)
    answer = hop(state)
    assert failed(answer, Dialect.WIX) == ("internal", "expired")
    assert "cookies" not in answer or not answer["cookies"]


def test_attempts_without_binding_still_connect_without_a_cookie(provider_server):
    attempt = start("google", Dialect.WIX)
    assert "state" in attempt.params  # BROWSER_BINDING=false: the oauthUrl is the provider's
    provider_server.script("/google/token", Answer(200, tokens_for(attempt)))
    assert connected(callback({"state": attempt.state, "code": "c"}), Dialect.WIX)
