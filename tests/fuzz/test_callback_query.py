"""Property tests on the callback's query string: whatever the provider (or an attacker) puts there,
never a 5xx, never a redirect anywhere but the attempt's stored return URL, nothing reflected unescaped."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calendar_connect import deployment
from calendar_connect.connect_flow import start_authorization
from calendar_connect.dialects import Dialect
from calendar_connect.observability import metrics
from calendar_connect.records import ApiClient
from tests.support.lambda_runtime import invoke, load_event

RETURN_URL = "https://booking.example.com/calendar/done?site=1"
NAMES = st.sampled_from(["state", "code", "error", "error_description", "iss", "scope", "session_state", "x"])
HOSTILE = st.sampled_from(
    ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "https://evil.example/", "//evil.example",
     "javascript:alert(1)", "\r\nSet-Cookie: a=b", "access_denied", "AADSTS65004", "%00", "\u202e"]
)  # fmt: skip
VALUES = st.one_of(HOSTILE, st.text(max_size=80))


def _callback(query: list[tuple[str, str]]) -> dict[str, Any]:
    event = load_event("callback-success.json")
    event["rawQueryString"] = urlencode(query)
    joined: dict[str, str] = {}
    for key, value in query:  # API Gateway joins repeated parameters with commas
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    event["queryStringParameters"] = joined
    # Metrics are disabled in tests, so nothing flushes them; at 100 buffered Powertools would try to.
    metrics.clear_metrics()
    return invoke("CallbackFunction", event)


def _assert_safe(answer: dict[str, Any], sent: list[tuple[str, str]]) -> None:
    assert answer["statusCode"] < 500 or answer["statusCode"] == 503
    headers = answer["headers"]
    if answer["statusCode"] in (301, 302, 303, 307, 308):
        location = urlsplit(headers["Location"])
        assert (location.scheme, location.netloc, location.path) == ("https", "booking.example.com", "/calendar/done")
        assert all(f"{k}=" not in location.query for k in ("code", "state", "error_description", "iss"))
    else:
        assert "Location" not in headers
        body = answer.get("body") or ""
        for _, value in sent:
            if any(c in value for c in "<>\"'&") and len(value) > 3:
                assert value not in body or html.escape(value) == value
        assert "default-src 'none'" in headers["Content-Security-Policy"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_any_query_without_a_known_state_is_answered_safely(query: list[tuple[str, str]], environment: Any) -> None:
    _assert_safe(_callback(query), query)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(extra=st.lists(st.tuples(NAMES.filter(lambda n: n != "state"), VALUES), max_size=5), data=st.data())
def test_any_query_on_a_live_state_goes_only_to_the_stored_return_url(
    extra: list[tuple[str, str]], data: st.DataObject, environment: Any
) -> None:
    # Given a live attempt (the token endpoint answers 500 unless scripted: a failed exchange at worst)
    client = ApiClient(
        clientId="fuzz", name="fuzz", keyHash="x" * 64, allowedReturnUrlPrefixes=[RETURN_URL], createdAt="2026-01-01"
    )
    google = deployment.current().providers["google"]
    started = start_authorization(
        deployment.current(), client, google, "s", RETURN_URL, Dialect.WIX, "https://cc.example.org"
    )
    state = dict(p.split("=", 1) for p in urlsplit(started.url).query.split("&"))["state"]
    from urllib.parse import unquote

    query = [("state", unquote(state)), *extra]
    query = data.draw(st.permutations(query))
    # Then whatever else the query holds, the answer is a redirect to the stored return URL, or a safe page
    answer = _callback(query)
    _assert_safe(answer, query)
    json.dumps(answer)  # a well-formed Lambda answer
