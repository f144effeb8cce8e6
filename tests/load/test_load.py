"""Concurrency and load against the local runner (`python -m local.runner`, as `make run` starts it), over HTTP.

The runner's gateway invokes one function at a time, as one Lambda container does; the threads here
race in its HTTP server, its routing and in DynamoDB Local. Handler-level races without that lock are
in tests/integration/test_callback.py (twenty concurrent callbacks).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from local.dynamodb import LOCAL_CREDENTIALS, free_port
from local.processes import stop_process
from local.template import ROOT

CONNECT = "/v2/external-calendars/connections/connect-by-oauth"


@dataclass
class Runner:
    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    dynamodb_endpoint: str
    log: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    port, dynamodb_port = free_port(), free_port()
    api_key = f"cc_loadtest_{secrets.token_urlsafe(32)}"
    environment = {
        **os.environ,
        "PORT": str(port),
        "DYNAMODB_PORT": str(dynamodb_port),
        "SANDBOX_PORT": str(free_port()),
        "LOCAL_API_KEY": api_key,
        "LOCAL_QUIET": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.runner"], cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    started = Runner(process, f"http://127.0.0.1:{port}", api_key, f"http://127.0.0.1:{dynamodb_port}", log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the runner exited: {log.read_text()[-3000:]}")
            try:
                answer = httpx.get(f"{started.base_url}/v2/external-calendars/providers", headers=started.headers())
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the runner did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)  # polling for readiness
        yield started
    finally:
        stop_process(process, timeout=20)


def initiate(client: httpx.Client, runner: Runner, schedule: str) -> httpx.Response:
    body = {"providerId": "sandbox", "scheduleId": schedule, "redirectUrl": f"{runner.base_url}/done?from=load"}
    return client.post(f"{runner.base_url}{CONNECT}", json=body, headers=runner.headers())


def pending_items(runner: Runner) -> int:
    import boto3

    dynamodb = boto3.client("dynamodb", endpoint_url=runner.dynamodb_endpoint, **LOCAL_CREDENTIALS)
    return int(dynamodb.scan(TableName="PendingAuthorizationsTable", Select="COUNT")["Count"])


def test_500_initiates_from_16_threads_all_answer_with_distinct_states(runner):
    # Given sixteen sites' threads sharing one API key
    before = pending_items(runner)

    def batch(thread: int) -> list[tuple[int, str]]:
        with httpx.Client(timeout=30) as client:
            answers = [initiate(client, runner, f"schedule-{thread}") for _ in range(500 // 16 + 1)]
        return [(a.status_code, a.json().get("oauthUrl", "")) for a in answers]

    # When they start 500 connections at once
    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(batch, range(16)) for r in rs][:500]
    # Then every one was answered 200, each with an attempt of its own, each stored
    assert [status for status, _ in results] == [200] * 500
    attempts = {parse_qs(urlsplit(url).query)["attempt"][0] for _, url in results}
    assert len(attempts) == 500
    assert all(len(a) >= 43 for a in attempts)  # 256 random bits, base64url
    assert pending_items(runner) - before >= 500


def test_20_parallel_callbacks_on_one_state_make_one_connection(runner):
    # Given a browser that went through the start hop and approved at the sandbox provider
    schedule = f"schedule-{secrets.token_hex(4)}"
    browser = httpx.Client(timeout=30)
    oauth_url = initiate(browser, runner, schedule).json()["oauthUrl"]
    to_provider = browser.get(oauth_url)
    assert to_provider.status_code == 302
    consent = browser.get(to_provider.headers["Location"])
    request_id = re.search(r'name="request" value="([^"]+)"', consent.text)
    assert request_id, consent.text
    issuer = urlsplit(to_provider.headers["Location"])
    decision = browser.post(
        f"{issuer.scheme}://{issuer.netloc}/authorize/decision",
        data={"request": request_id.group(1), "decision": "approve", "email": "load@sandbox.test"},
    )
    callback_url = decision.headers["Location"]
    cookies = dict(browser.cookies)
    browser.close()

    # When the browser's callback arrives twenty times at once
    def arrive(_: int) -> httpx.Response:
        with httpx.Client(timeout=60, cookies=cookies) as client:
            return client.get(callback_url)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(arrive, range(20)))
    # Then all twenty go home with the same connection
    locations = {answer.headers.get("Location") for answer in answers}
    assert [a.status_code for a in answers] == [302] * 20
    (location,) = locations
    outcome = parse_qs(urlsplit(location).query)
    assert outcome["from"] == ["load"] and set(outcome) == {"from", "connectionId"}
    # And exactly one connection exists, whose tokens are live: the sandbox redeems a code once and
    # revokes what it issued when a code is replayed, so a second exchange would have killed them.
    with httpx.Client(timeout=30, headers=runner.headers()) as api:
        listed = api.get(f"{runner.base_url}/v2/external-calendars/connections", params={"scheduleId": schedule})
        assert [c["connectionId"] for c in listed.json()["connections"]] == outcome["connectionId"]
        token = api.post(
            f"{runner.base_url}/v2/external-calendars/connections/{outcome['connectionId'][0]}/access-token"
        )
        assert token.status_code == 200
    sandbox = f"{issuer.scheme}://{issuer.netloc}"
    userinfo = httpx.get(f"{sandbox}/userinfo", headers={"Authorization": f"Bearer {token.json()['accessToken']}"})
    assert userinfo.status_code == 200
