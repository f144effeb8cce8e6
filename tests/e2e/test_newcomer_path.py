"""The README's path, against `python -m local.runner` as `make run` starts it: the curl tour exactly as the README
prints it, the demo page it lands on, `make invoke` with the event files, and `make client`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.examples import EXAMPLE_API_KEY
from local.template import ROOT
from tests.e2e.conftest import UUID, Runner, start_runner

README_BASE_URL = "http://127.0.0.1:3000"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    running = start_runner(tmp_path_factory.mktemp("runner"))
    yield running
    assert running.stop() == 0, running.output()


def readme_tour() -> str:
    """The shell block between the README's tour markers, as a reader copies it."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- tour -->\s*```sh\n(.*?)```", readme, re.DOTALL)
    assert found, "README.md has no <!-- tour --> block"
    return found.group(1)


def clean_environment(**extra: str) -> dict[str, str]:
    """A newcomer's shell: no PYTHONPATH, no AWS settings (make and the commands must supply what they need)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONPATH", "POWERTOOLS_"))}
    env.update(extra)
    return env


def make(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The test's own interpreter and venv: the Makefile's install steps ran before the tests (make test).
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_curl_tour_works_as_pasted_and_lands_on_the_right_schedule(runner: Runner) -> None:
    # Given the README's tour, run by bash with the key make run printed (its URL pointed at this runner)
    script = readme_tour()
    assert README_BASE_URL in script
    script = script.replace(README_BASE_URL, runner.base_url)
    # When it runs
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=clean_environment(KEY=runner.api_key),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then every step answered, the connectionId was captured and used, and the disconnect revoked the tokens
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"^connectionId: (\S+)$", done.stdout, re.MULTILINE)
    assert found and UUID.match(found.group(1)), done.stdout
    connection_id = found.group(1)
    assert '"status":"CONNECTED"' in done.stdout
    assert '"accessToken"' in done.stdout
    assert '"status":"DISCONNECTED"' in done.stdout and '"revokedAtProvider":true' in done.stdout
    assert "NOT_FOUND" not in done.stdout
    # And the demo page the browser would land on shows that connection's schedule, not the demo's default
    page = httpx.get(runner.base_url + "/", params={"connectionId": connection_id}).text
    assert "Connections of schedule <code>my-schedule</code>" in page
    assert f'data-connection-id="{connection_id}"' in page
    assert 'id=schedule value="my-schedule"' in page


def test_make_invoke_replays_event_files_against_make_runs_dynamodb(runner: Runner) -> None:
    env = clean_environment(DYNAMODB_PORT=str(runner.dynamodb_port), PORT=runner.base_url.rsplit(":", 1)[1])
    # The example key of events/ is registered by the runner: the providers event answers 200
    listed = make("invoke", "FUNCTION=InitiateFunction", "EVENT=events/providers-list.json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("HTTP 200"), listed.stdout
    assert '"providerId":"apple"' in listed.stdout
    # Google has no OAuth client here: the Wix event is refused as the contract says
    refused = make("invoke", "FUNCTION=InitiateFunction", "EVENT=events/initiate-wix.json", env=env)
    assert refused.stdout.startswith("HTTP 428") and "PROVIDER_NOT_CONFIGURED" in refused.stdout, refused.stdout
    # With Google's client in the environment it starts an attempt in the runner's own table
    google = {**env, "GOOGLE_CLIENT_ID": "invoke-test.apps.googleusercontent.com", "GOOGLE_CLIENT_SECRET": "x"}
    started = make("invoke", "FUNCTION=InitiateFunction", "EVENT=events/initiate-wix.json", env=google)
    assert started.stdout.startswith("HTTP 200"), started.stdout + started.stderr
    assert f'"oauthUrl":"{runner.base_url}/oauth2/start?attempt=' in started.stdout
    # And the callback event replays too (an unknown state: a 400 page, no redirect)
    callback = make("invoke", "FUNCTION=CallbackFunction", "EVENT=events/callback-unknown-state.json", env=env)
    assert callback.stdout.startswith("HTTP 400"), callback.stdout + callback.stderr
    # The example key answers over HTTP as well
    assert (
        httpx.get(
            runner.base_url + "/v2/external-calendars/providers", headers={"Authorization": f"Bearer {EXAMPLE_API_KEY}"}
        ).status_code
        == 200
    )


def test_make_invoke_says_what_to_do_without_make_run() -> None:
    # Given no DynamoDB Local where make run would put it
    from local.dynamodb import free_port

    env = clean_environment(DYNAMODB_PORT=str(free_port()))
    done = make("invoke", "FUNCTION=InitiateFunction", "EVENT=events/providers-list.json", env=env)
    assert done.returncode != 0
    assert "start `make run`" in done.stderr


def test_make_client_registers_in_make_runs_dynamodb_by_default(runner: Runner, tmp_path: Path) -> None:
    env = clean_environment(DYNAMODB_PORT=str(runner.dynamodb_port))
    done = make("client", f"ARGS=register --name 'Booking site' --prefix {runner.base_url}/booking/", env=env)
    assert done.returncode == 0, done.stderr
    api_key = re.search(r"^apiKey:\s+(\S+)$", done.stdout, re.MULTILINE)
    assert api_key, done.stdout
    with httpx.Client(base_url=runner.base_url, headers={"Authorization": f"Bearer {api_key.group(1)}"}) as api:
        assert api.get("/v2/external-calendars/providers").status_code == 200
        answer = api.post(
            "/v2/external-calendars/connections/connect-by-oauth",
            json={"providerId": "sandbox", "scheduleId": "s", "redirectUrl": f"{runner.base_url}/elsewhere/"},
        )
        assert answer.status_code == 403  # only its own prefix
    client_id = re.search(r"^clientId:\s+(\S+)$", done.stdout, re.MULTILINE)
    assert client_id
    revoked = make("client", f"ARGS=revoke {client_id.group(1)}", env=env)
    assert revoked.returncode == 0, revoked.stderr
    with httpx.Client(base_url=runner.base_url, headers={"Authorization": f"Bearer {api_key.group(1)}"}) as api:
        assert api.get("/v2/external-calendars/providers").status_code == 401


def test_the_demo_page_explains_itself_and_offers_only_what_can_work(runner: Runner) -> None:
    from local.demo import OUTCOME_MESSAGES

    # Given the demo page as make run serves it (no Google or Microsoft client configured)
    home = httpx.get(runner.base_url + "/").text
    # Then it says what a schedule and each dialect are
    assert "A schedule is the website's own name for whose calendar this is" in home
    assert "Wix dialect" in home and "TeamUp dialect" in home
    # And offers only the providers that can finish a connection here
    assert re.findall(r'<option value="([^"]*)"', home) == ["sandbox"]
    # And a failure is said in words beside its codes
    failed = httpx.get(runner.base_url + "/", params={"error": "reject", "reason": "access_denied"}).text
    assert OUTCOME_MESSAGES["access_denied"].replace("'", "&#x27;") in failed
    assert "<code id=reason>access_denied</code>" in failed
