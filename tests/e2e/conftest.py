"""End-to-end fixtures: the local runner as `make run` starts it, a real Chromium, and their helpers.

Each test module starts its own runner (`python -m local.runner` on free ports), waits until it
answers, and stops it with SIGINT, as Ctrl-C would.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from local.browser import find_chromium
from local.dynamodb import free_port
from local.processes import stop_process
from local.template import ROOT

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 120.0
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll for readiness with a bound (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:.0f}s")
        time.sleep(interval)


def new_api_key() -> str:
    return f"cc_e2e{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


@dataclass
class Runner:
    """A `python -m local.runner` process of this test module."""

    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    dynamodb_port: int
    sandbox_url: str
    log: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.process, timeout=30, stop_signal=signal.SIGINT)  # SIGINT: what Ctrl-C sends


def start_runner(log_dir: Path, port: int | None = None, **environment: str) -> Runner:
    port, dynamodb_port, sandbox_port = port or free_port(), free_port(), free_port()
    api_key = environment.get("LOCAL_API_KEY") or new_api_key()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared" / "python"), str(ROOT)]),
        "PORT": str(port),
        "DYNAMODB_PORT": str(dynamodb_port),
        "SANDBOX_PORT": str(sandbox_port),
        "LOCAL_API_KEY": api_key,
        "PYTHONUNBUFFERED": "1",
        **environment,
    }
    # Settings a developer's shell may hold must not change what the tests see.
    for inherited in (
        "PROVIDERS_FILE",
        "PUBLIC_BASE_URL",
        "LOCAL_REDIRECT_PREFIXES",
        "BROWSER_BINDING",
        "SANDBOX_ACCESS_TOKEN_SECONDS",
        "LOCAL_QUIET",
        "LOCAL_KEEPALIVE_SECONDS",
    ):
        if inherited not in environment:
            env.pop(inherited, None)
    log = log_dir / "runner.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.runner"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    runner = Runner(
        process, f"http://127.0.0.1:{port}", api_key, dynamodb_port, f"http://127.0.0.1:{sandbox_port}", log
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the runner exited with {process.returncode}:\n{runner.output()}")
        try:
            with runner.api() as api:
                return api.get("/v2/external-calendars/providers").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, START_TIMEOUT, "the local runner", interval=0.2)
    except BaseException:
        runner.stop()
        raise
    return runner


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = find_chromium()
    if chromium is None:
        reason = (
            "no Chromium on this machine (chromium, chromium-browser, google-chrome on PATH, or CHROMIUM_PATH): "
            "`make browser` installs Debian's as root or with passwordless sudo"
        )
        if os.environ.get("REQUIRE_BROWSER"):  # CI can install it, so there a missing browser is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) that reaches nothing but this machine."""
    context = browser.new_context()
    context.set_default_timeout(20_000)

    def offline_only(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", offline_only)
    yield context.new_page()
    context.close()


def starting(prefix: str) -> Callable[[str], bool]:
    """A URL predicate for Playwright (its globs treat `?` as a wildcard)."""
    return lambda url: url.startswith(prefix)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def assert_no_secrets_in(url: str) -> None:
    """The contract: `code`, `state` and tokens never appear in the return URL."""
    keys = set(query_of(url))
    assert not keys & {"code", "state", "access_token", "refresh_token", "id_token", "attempt"}, url


def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node is missing (the e2e tests run oidc-provider on it)")
    return found
