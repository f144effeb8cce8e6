"""Secrets stay secret: full flows (browser-bound connect, failed connect, refresh, disconnect) with every
log line captured; no token, code, state, PKCE verifier, binding cookie, client secret or API key in any."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from calendar_connect import deployment
from calendar_connect.secret_hashes import hash_secret
from tests.conftest import GOOGLE_CLIENT_ID
from tests.support.lambda_runtime import EXAMPLE_API_KEY, invoke, json_body, load_event
from tests.support.provider_server import Answer, google_tokens

pytestmark = pytest.mark.usefixtures("example_client")
RETURN_URL = "https://booking.example.com/calendar/connected"


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _browser(path: str, query: dict[str, str], cookies: list[str] | None = None) -> dict[str, Any]:
    event = load_event("start-attempt.json" if path == "/oauth2/start" else "callback-success.json")
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query
    if cookies:
        event["cookies"] = cookies
    return invoke("CallbackFunction", event)


def _on_connection(event_file: str, connection_id: str) -> dict[str, Any]:
    event = load_event(event_file)
    path = event["rawPath"].replace(event["pathParameters"]["connectionId"], connection_id)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"connectionId": connection_id}
    return invoke("InitiateFunction", event)


def _connect(provider_server: Any, tokens: dict[str, Any] | None, code: str) -> tuple[dict[str, Any], list[str]]:
    """Initiate, the start hop, the provider's redirect back; the answer and every secret it involved."""
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps({"providerId": "google", "scheduleId": "schedule-logs", "redirectUrl": RETURN_URL})
    state = _query(json_body(invoke("InitiateFunction", event))["oauthUrl"])["attempt"]
    hop = _browser("/oauth2/start", {"attempt": state})
    cookie = hop["cookies"][0].split(";")[0]
    to_provider = _query(hop["headers"]["Location"])
    pending = deployment.current().storage.pending.get(hash_secret(state))
    assert pending is not None and pending.codeVerifier
    if tokens is not None:
        tokens["id_token"] = google_tokens(GOOGLE_CLIENT_ID, to_provider["nonce"])["id_token"]
        provider_server.script("/google/token", Answer(200, tokens))
    else:
        provider_server.script("/google/token", Answer(400, {"error": "invalid_grant"}))
    answer = _browser("/oauth2/callback", {"state": state, "code": code}, [cookie])
    secrets = [state, code, pending.codeVerifier, to_provider["code_challenge"], cookie.split("=", 1)[1]]
    return answer, secrets


def test_no_secret_of_any_flow_reaches_a_log_line(environment, provider_server, monkeypatch, log_lines):
    monkeypatch.setenv("BROWSER_BINDING", "true")
    deployment.reset()
    # Given a connect whose access token is about to expire, so the next access-token call refreshes it
    tokens = google_tokens(GOOGLE_CLIENT_ID, None)
    tokens.update(access_token="ya29.first-access-secret", refresh_token="1//first-refresh-secret", expires_in=60)
    connected, secrets = _connect(provider_server, tokens, "4/0A-connect-code-secret")
    connection_id = _query(connected["headers"]["Location"])["connectionId"]
    # And a connect that fails at the token endpoint
    failed, more = _connect(provider_server, None, "4/0A-failing-code-secret")
    assert _query(failed["headers"]["Location"])["reason"] == "token_exchange_failed"
    # When the site refreshes, then disconnects
    provider_server.script(
        "/google/token",
        Answer(200, {"access_token": "ya29.refreshed-access-secret", "expires_in": 3599, "token_type": "Bearer"}),
    )
    refreshed = _on_connection("connection-access-token.json", connection_id)
    assert json_body(refreshed)["accessToken"] == "ya29.refreshed-access-secret"
    assert _on_connection("connection-delete.json", connection_id)["statusCode"] == 200
    # Then the flows wrote log lines, and none holds a secret
    logs = log_lines()
    for line in ("authorization started", "authorization finished", "token exchange failed"):
        assert line in logs
    for secret in [
        *secrets,
        *more,
        "ya29.first-access-secret",
        "1//first-refresh-secret",
        "ya29.refreshed-access-secret",
        tokens["id_token"],
        "google-test-client-secret",
        EXAMPLE_API_KEY,
        EXAMPLE_API_KEY.rsplit("_", 1)[1],
    ]:
        assert secret not in logs, f"a secret reached the logs: {secret[:6]}..."
