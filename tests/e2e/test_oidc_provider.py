"""Against a real authorization server nobody here wrote: the npm package oidc-provider, in Chromium.

It is added through PROVIDERS_FILE as an OIDC provider found by issuer discovery, authenticates
its client with client_secret_basic, requires PKCE and sends `iss` in its authorization responses.
Refresh tokens come with offline_access, which oidc-provider grants only with prompt=consent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from local.dynamodb import LOCAL_CREDENTIALS, free_port
from local.processes import stop_process
from local.template import ROOT, load_template, tables
from tests.e2e.conftest import UUID, Runner, assert_no_secrets_in, node, query_of, start_runner, starting, wait_until

PROVIDER_ID = "oidc"
# The same authorization server and client, with a keep-alive so short that its connections are due at once.
KEEPALIVE_PROVIDER_ID = "oidc-keepalive"
CLIENT_ID = "calendar-connect-e2e"
SECRET_VARIABLE = "OIDC_E2E_CLIENT_SECRET"
PENDING_TABLE = next(name for name in tables(load_template()) if name.startswith("Pending"))


@dataclass
class OidcProvider:
    process: subprocess.Popen[bytes]
    issuer: str
    log: Path

    def counts(self) -> dict[str, int]:
        return dict(httpx.get(self.issuer + "/__e2e/counts").json())

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


@dataclass
class Stack:
    runner: Runner
    oidc: OidcProvider
    client_secret: str = ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("oidc")
    port, oidc_port = free_port(), free_port()
    secret = secrets.token_urlsafe(32)
    issuer = f"http://127.0.0.1:{oidc_port}"
    log = directory / "oidc-provider.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [node(), str(ROOT / "tests" / "e2e" / "oidc_provider.mjs")],
            cwd=ROOT,
            env={
                **os.environ,
                "OIDC_PORT": str(oidc_port),
                "OIDC_CLIENT_ID": CLIENT_ID,
                "OIDC_CLIENT_SECRET": secret,
                "OIDC_REDIRECT_URI": f"http://127.0.0.1:{port}/oauth2/callback",
                # The ID token names the account only; the e-mail must be fetched from userinfo.
                "OIDC_EMAIL_AT_USERINFO_ONLY": "1",
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    oidc = OidcProvider(process, issuer, log)

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"oidc-provider exited:\n{log.read_text()}")
        try:
            return httpx.get(issuer + "/.well-known/openid-configuration").status_code == 200
        except httpx.TransportError:
            return False

    entry = {
        "name": "oidc-provider (e2e)",
        "calendar_type": "OIDC",
        "calendar_source": "OIDC",
        "connect_methods": ["OAUTH"],
        "issuer": issuer,
        "discovery": True,
        "scopes": ["openid", "email", "calendar", "offline_access"],
        "required_scopes": ["calendar"],
        "authorization_params": {"prompt": "consent"},
        "token_endpoint_auth_method": "client_secret_basic",
        "pkce": True,
        "timeout_seconds": 300,
        "client_id": CLIENT_ID,
        "client_secret": {"env": SECRET_VARIABLE},
    }
    keepalive_entry = {**entry, "name": "oidc-provider, keep-alive (e2e)", "calendar_source": "OIDCKA"}
    providers = directory / "providers.yaml"
    providers.write_text(
        yaml.safe_dump({PROVIDER_ID: entry, KEEPALIVE_PROVIDER_ID: {**keepalive_entry, "keepalive_seconds": 1}})
    )
    try:
        wait_until(serving, 30, "oidc-provider")
        runner = start_runner(
            directory,
            port=port,
            PROVIDERS_FILE=str(providers),
            LOCAL_KEEPALIVE_SECONDS="2",  # the keep-alive job, as `make run` runs it, every 2 s
            **{SECRET_VARIABLE: secret},
        )
    except BaseException:
        oidc.stop()
        raise
    yield Stack(runner, oidc, secret)
    code = runner.stop()
    oidc.stop()
    assert code == 0, runner.output()
    assert secret not in runner.output()


def connect(stack: Stack, schedule_id: str, provider_id: str = PROVIDER_ID) -> dict[str, Any]:
    with stack.runner.api() as api:
        answer = api.post(
            "/v2/external-calendars/connections/connect-by-oauth",
            json={"providerId": provider_id, "scheduleId": schedule_id, "redirectUrl": stack.runner.base_url + "/"},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def log_in_until_consent(page: Any, stack: Stack, oauth_url: str, login: str) -> None:
    """oidc-provider's development pages: any login and password, then the consent prompt."""
    page.goto(oauth_url)
    page.wait_for_url(starting(stack.oidc.issuer + "/interaction/"))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=prompt][value=consent]", state="attached")


def finish(page: Any, stack: Stack, action: str) -> str:
    if action == "approve":
        page.click("button[type=submit]")
    else:
        page.click("text=[ Cancel ]")
    page.wait_for_url(starting(stack.runner.base_url + "/?"))
    assert_no_secrets_in(page.url)
    return str(page.url)


def test_discovery_lists_the_provider(stack: Stack) -> None:
    with stack.runner.api() as api:
        providers = {p["providerId"]: p for p in api.get("/v2/external-calendars/providers").json()["providers"]}

    assert providers[PROVIDER_ID]["connectMethods"] == ["OAUTH"]
    assert "sandbox" in providers  # the runner's own provider file comes first, the user's is added


def test_approve_connects_and_the_tokens_work(page: Any, stack: Stack) -> None:
    schedule_id = f"oidc-{secrets.token_hex(4)}"
    before = stack.oidc.counts()
    log_in_until_consent(page, stack, connect(stack, schedule_id)["oauthUrl"], "alice")

    url = finish(page, stack, "approve")

    connection_id = query_of(url)["connectionId"][0]
    assert UUID.match(connection_id)
    assert page.text_content("#connection-id") == connection_id
    assert stack.oidc.counts()["grantSuccess"] == before["grantSuccess"] + 1
    with stack.runner.api() as api:
        connection = api.get(f"/v2/external-calendars/connections/{connection_id}").json()["connection"]
        assert connection["externalAccountId"] == "alice"
        assert connection["externalAccountEmail"] == "alice@oidc.test"  # released at userinfo only
        assert {"calendar", "offline_access"} <= set(connection["scopesGranted"])
        token = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
        assert token.status_code == 200, token.text
        userinfo = httpx.get(
            stack.oidc.issuer + "/me", headers={"Authorization": f"Bearer {token.json()['accessToken']}"}
        )
        assert userinfo.status_code == 200
        assert userinfo.json()["sub"] == "alice"

        disconnected = api.delete(f"/v2/external-calendars/connections/{connection_id}").json()

    assert disconnected["connection"]["status"] == "DISCONNECTED"
    assert disconnected["revokedAtProvider"] is True
    assert stack.oidc.counts()["refreshTokensDestroyed"] > before["refreshTokensDestroyed"]


def test_deny_comes_back_as_reject(page: Any, stack: Stack) -> None:
    schedule_id = f"oidc-{secrets.token_hex(4)}"
    log_in_until_consent(page, stack, connect(stack, schedule_id)["oauthUrl"], "bob")

    url = finish(page, stack, "deny")

    assert query_of(url)["error"] == ["reject"]
    assert query_of(url)["reason"] == ["access_denied"]
    assert page.text_content("#reason") == "access_denied"


def test_a_replayed_callback_replays_the_outcome_without_a_second_exchange(page: Any, stack: Stack) -> None:
    schedule_id = f"oidc-{secrets.token_hex(4)}"
    log_in_until_consent(page, stack, connect(stack, schedule_id)["oauthUrl"], "carol")
    callback = starting(stack.runner.base_url + "/oauth2/callback?")
    with page.expect_request(lambda request: callback(request.url)) as held:
        first = finish(page, stack, "approve")
    callback_url = held.value.url
    assert "iss=" in callback_url  # RFC 9207, checked against the discovered issuer
    counts = stack.oidc.counts()

    page.goto(callback_url)
    page.wait_for_url(starting(stack.runner.base_url + "/?"))

    assert page.url == first
    assert stack.oidc.counts()["grantSuccess"] == counts["grantSuccess"]
    assert stack.oidc.counts()["grantError"] == counts["grantError"]  # the code was not offered again


def expire(stack: Stack, oauth_url: str) -> None:
    """Move the attempt's expiresAt into the past, as time would (DynamoDB's TTL deletion is lazy)."""
    state = query_of(oauth_url)["attempt"][0]
    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{stack.runner.dynamodb_port}", **LOCAL_CREDENTIALS
    )
    client.update_item(
        TableName=PENDING_TABLE,
        Key={"stateHash": {"S": hashlib.sha256(state.encode()).hexdigest()}},
        UpdateExpression="SET expiresAt = :past",
        ConditionExpression="attribute_exists(stateHash)",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )


def test_an_attempt_past_its_timeout_comes_back_expired_without_an_exchange(page: Any, stack: Stack) -> None:
    schedule_id = f"oidc-{secrets.token_hex(4)}"
    oauth_url = connect(stack, schedule_id)["oauthUrl"]
    log_in_until_consent(page, stack, oauth_url, "dave")
    counts = stack.oidc.counts()
    expire(stack, oauth_url)

    url = finish(page, stack, "approve")

    assert query_of(url)["error"] == ["internal"]
    assert query_of(url)["reason"] == ["expired"]
    assert stack.oidc.counts()["grantSuccess"] == counts["grantSuccess"]
    with stack.runner.api() as api:
        listed = api.get("/v2/external-calendars/connections", params={"scheduleId": schedule_id}).json()
    assert listed["connections"] == []


def test_the_start_hop_of_an_expired_attempt_goes_straight_back(page: Any, stack: Stack) -> None:
    oauth_url = connect(stack, f"oidc-{secrets.token_hex(4)}")["oauthUrl"]
    expire(stack, oauth_url)

    page.goto(oauth_url)

    assert page.url.startswith(stack.runner.base_url + "/?")
    assert query_of(page.url)["reason"] == ["expired"]


def test_the_runner_never_logs_codes_states_or_tokens(page: Any, stack: Stack) -> None:
    oauth_url = connect(stack, f"oidc-{secrets.token_hex(4)}")["oauthUrl"]
    log_in_until_consent(page, stack, oauth_url, "erin")
    callback = starting(stack.runner.base_url + "/oauth2/callback?")
    with page.expect_request(lambda request: callback(request.url)) as held:
        finish(page, stack, "approve")
    query = query_of(held.value.url)
    output = stack.runner.output()

    assert query["code"][0] not in output
    assert query["state"][0] not in output
    assert query_of(oauth_url)["attempt"][0] not in output


def test_keepalive_refreshes_a_connection_and_marks_a_revoked_grant_reauth_required(page: Any, stack: Stack) -> None:
    # Given a connection of a provider whose keep-alive comes due at once, and the runner's job every 2 s
    schedule_id = f"oidc-{secrets.token_hex(4)}"
    before = stack.oidc.counts()
    log_in_until_consent(page, stack, connect(stack, schedule_id, KEEPALIVE_PROVIDER_ID)["oauthUrl"], "frank")
    connection_id = query_of(finish(page, stack, "approve"))["connectionId"][0]
    # When the job has run: the authorization server granted a refresh beyond the code exchange
    wait_until(lambda: stack.oidc.counts()["grantSuccess"] >= before["grantSuccess"] + 2, 60, "a keep-alive refresh")
    # And then the person revokes the grant at the provider (RFC 7009 revocation of a token revokes its grant)
    with stack.runner.api() as api:
        token = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
    assert token.status_code == 200, token.text
    revocation = httpx.get(stack.oidc.issuer + "/.well-known/openid-configuration").json()["revocation_endpoint"]
    revoked = httpx.post(revocation, data={"token": token.json()["accessToken"]}, auth=(CLIENT_ID, stack.client_secret))
    assert revoked.status_code == 200

    # Then the next keep-alive run meets invalid_grant, and the connection becomes REAUTH_REQUIRED
    def reauth_required() -> bool:
        with stack.runner.api() as api:
            answer = api.get(f"/v2/external-calendars/connections/{connection_id}")
        return bool(answer.json()["connection"]["status"] == "REAUTH_REQUIRED")

    wait_until(reauth_required, 60, "REAUTH_REQUIRED after the revocation")
    with stack.runner.api() as api:
        answer = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
    assert answer.status_code == 428
    assert answer.json()["details"]["applicationError"]["code"] == "REAUTH_REQUIRED"
    # And the runner printed its runs, one line each, this one's outcome among them
    assert re.search(r"^keep-alive: \d+ due, \d+ refreshed, 1 reauth required, 0 failed", stack.runner.output(), re.M)
