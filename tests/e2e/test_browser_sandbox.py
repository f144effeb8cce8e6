"""In Chromium, against `python -m local.runner`: the demo site, the sandbox's consent page, both dialects."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import UUID, Runner, assert_no_secrets_in, query_of, start_runner, starting

# Sandbox access tokens live 4 minutes: inside the 5-minute margin, so every access-token call refreshes.
SHORT_TOKEN_SECONDS = "240"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    running = start_runner(tmp_path_factory.mktemp("runner"), SANDBOX_ACCESS_TOKEN_SECONDS=SHORT_TOKEN_SECONDS)
    yield running
    assert running.stop() == 0, running.output()


def schedule() -> str:
    return f"sched-{secrets.token_hex(4)}"


def connect_from_demo(page: Any, runner: Runner, schedule_id: str, decision: str, dialect: str = "wix") -> str:
    """Given the demo page, when the person connects and decides on the consent page, then the final URL."""
    page.goto(runner.base_url + "/")
    page.select_option("#provider", "sandbox")
    page.fill("#schedule", schedule_id)
    page.check(f"input[name=dialect][value={dialect}]")
    page.click("#connect")
    page.wait_for_url(starting(runner.sandbox_url + "/authorize?"))
    page.click(f"button[name=decision][value={decision}]")
    page.wait_for_url(starting(runner.base_url + "/?"))
    assert_no_secrets_in(page.url)
    return str(page.url)


def test_approve_shows_the_connection_id_and_lists_the_connection(page: Any, runner: Runner) -> None:
    schedule_id = schedule()

    url = connect_from_demo(page, runner, schedule_id, "approve")

    connection_id = page.text_content("#connection-id")
    assert connection_id and UUID.match(connection_id)
    assert query_of(url)["connectionId"] == [connection_id]
    assert query_of(url)["scheduleId"] == [schedule_id]  # the return URL's own parameters are kept
    row = page.locator(f'tr[data-connection-id="{connection_id}"]')
    assert row.locator(".status").text_content() == "CONNECTED"
    assert "ada@sandbox.test" in (row.text_content() or "")
    with runner.api() as api:
        listed = api.get("/v2/external-calendars/connections", params={"scheduleId": schedule_id}).json()
        assert [c["connectionId"] for c in listed["connections"]] == [connection_id]
        connection = listed["connections"][0]
        assert connection["providerId"] == "sandbox"
        assert connection["scopesGranted"] == ["openid", "email", "calendar"]
        assert connection["externalAccountEmail"] == "ada@sandbox.test"


@pytest.mark.parametrize(
    ("choice", "error", "reason"),
    [("deny", "reject", "access_denied"), ("approve_without_calendar", "unsupported", "scope_not_granted")],
)
def test_a_refusal_comes_back_as_its_error_and_reason(
    page: Any, runner: Runner, choice: str, error: str, reason: str
) -> None:
    schedule_id = schedule()

    url = connect_from_demo(page, runner, schedule_id, choice)

    assert query_of(url)["error"] == [error]
    assert query_of(url)["reason"] == [reason]
    assert page.text_content("#error") == error
    assert page.text_content("#reason") == reason
    assert page.locator("#no-connections").is_visible()


def test_the_demo_connects_in_the_teamup_dialect_too(page: Any, runner: Runner) -> None:
    schedule_id = schedule()

    url = connect_from_demo(page, runner, schedule_id, "approve", dialect="teamup")

    assert query_of(url)["success"] == ["1"]
    assert UUID.match(query_of(url)["connectionId"][0])


def teamup_initiate(runner: Runner, schedule_id: str, return_url: str) -> dict[str, Any]:
    with runner.api() as api:
        answer = api.post(
            "/api/v2/external_calendars/accounts/oauth2/initiate",
            data={"calendar_source": "SANDBOX", "redirect_uri": return_url},
            headers={"TeamUp-Provider-ID": schedule_id},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("approve", {"success": ["1"]}),
        ("deny", {"success": ["0"], "error": ["reject"], "reason": ["access_denied"]}),
        ("approve_without_calendar", {"success": ["0"], "error": ["unsupported"], "reason": ["scope_not_granted"]}),
    ],
)
def test_teamup_initiate_then_the_browser(page: Any, runner: Runner, decision: str, expected: dict[str, Any]) -> None:
    schedule_id = schedule()
    started = teamup_initiate(runner, schedule_id, f"{runner.base_url}/?scheduleId={schedule_id}&from=teamup")
    assert started["timeout_seconds"] == 600

    page.goto(started["uri"])
    page.wait_for_url(starting(runner.sandbox_url + "/authorize?"))
    page.click(f"button[name=decision][value={decision}]")
    page.wait_for_url(starting(runner.base_url + "/?"))

    query = query_of(page.url)
    assert_no_secrets_in(page.url)
    assert query["from"] == ["teamup"]
    for key, value in expected.items():
        assert query[key] == value
    if decision == "approve":
        assert page.text_content("#connection-id") == query["connectionId"][0]
        with runner.api() as api:
            listed = api.get("/v2/external-calendars/connections", params={"scheduleId": schedule_id}).json()
        assert [c["connectionId"] for c in listed["connections"]] == query["connectionId"]
    else:
        assert "connectionId" not in query


def test_access_tokens_refresh_through_the_sandbox_and_disconnect_revokes(page: Any, runner: Runner) -> None:
    schedule_id = schedule()
    connect_from_demo(page, runner, schedule_id, "approve")
    connection_id = page.text_content("#connection-id")

    with runner.api() as api:
        first = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
        second = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        # Each call refreshed (the sandbox's tokens expire within the margin) with the rotated refresh token.
        assert first.json()["accessToken"] != second.json()["accessToken"]
        userinfo = httpx.get(
            runner.sandbox_url + "/userinfo", headers={"Authorization": f"Bearer {second.json()['accessToken']}"}
        )
        assert userinfo.status_code == 200
        assert userinfo.json()["email"] == "ada@sandbox.test"

        page.locator(f'tr[data-connection-id="{connection_id}"] button').click()
        page.wait_for_url(lambda url: "disconnected=" in url)

        assert page.text_content("#revoked") == "true"
        assert page.locator(f'tr[data-connection-id="{connection_id}"] .status').text_content() == "DISCONNECTED"
        after = api.post(f"/v2/external-calendars/connections/{connection_id}/access-token")
        assert after.status_code == 428
        assert after.json()["details"]["applicationError"]["code"] == "DISCONNECTED"
    revoked = httpx.get(
        runner.sandbox_url + "/userinfo", headers={"Authorization": f"Bearer {second.json()['accessToken']}"}
    )
    assert revoked.status_code == 401  # revoking the refresh token revoked its access tokens too


def wix_initiate(runner: Runner, schedule_id: str) -> dict[str, Any]:
    with runner.api() as api:
        answer = api.post(
            "/v2/external-calendars/connections/connect-by-oauth",
            json={"providerId": "sandbox", "scheduleId": schedule_id, "redirectUrl": runner.base_url + "/"},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_callback_in_another_browser_is_refused_and_the_first_browser_still_finishes(
    browser: Any, page: Any, runner: Runner
) -> None:
    """The start hop binds the attempt to the first browser; a consent finished elsewhere gets a 403 page and
    uses up nothing, so the first browser can still finish."""
    schedule_id = schedule()
    started = wix_initiate(runner, schedule_id)
    page.goto(started["oauthUrl"])
    page.wait_for_url(starting(runner.sandbox_url + "/authorize?"))

    other = browser.new_context()
    try:
        other_page = other.new_page()
        other_page.goto(page.url)  # the provider's page, forwarded to another browser
        with other_page.expect_response(lambda response: "/oauth2/callback?" in response.url) as refused:
            other_page.click("button[name=decision][value=approve]")
        assert refused.value.status == 403
        assert "another browser" in (other_page.text_content("body") or "")
        assert "connectionId" not in other_page.url
    finally:
        other.close()

    page.click("button[name=decision][value=approve]")
    page.wait_for_url(starting(runner.base_url + "/?"))
    connection_id = query_of(page.url)["connectionId"][0]
    assert UUID.match(connection_id)
    with runner.api() as api:
        listed = api.get("/v2/external-calendars/connections", params={"scheduleId": schedule_id}).json()
    assert [c["connectionId"] for c in listed["connections"]] == [connection_id]


def test_opening_the_start_link_again_in_the_same_browser_continues(browser: Any, page: Any, runner: Runner) -> None:
    """Back (the hop is a redirect, so Back returns to the page that opened it) and opening the link again, or a
    reload of the hop: the binding cookie reaches /oauth2/start too, so the same browser carries on."""
    started = wix_initiate(runner, schedule())
    page.goto(started["oauthUrl"])
    page.wait_for_url(starting(runner.sandbox_url + "/authorize?"))

    again = page.goto(started["oauthUrl"])
    assert again is not None and again.status == 200  # the provider's consent page, again
    page.wait_for_url(starting(runner.sandbox_url + "/authorize?"))
    page.click("button[name=decision][value=approve]")
    page.wait_for_url(starting(runner.base_url + "/?"))
    assert UUID.match(query_of(page.url)["connectionId"][0])

    other = browser.new_context()
    try:
        refused = other.new_page().goto(started["oauthUrl"])
        assert refused is not None and refused.status == 403
    finally:
        other.close()


def test_every_outcome_page_escapes_what_it_shows(page: Any, runner: Runner) -> None:
    page.goto(runner.base_url + "/?error=%3Cb%20id%3Dinjected%3Ex%3C%2Fb%3E&reason=%22%3E%3Cscript%3E")

    assert page.locator("#injected").count() == 0
    assert page.text_content("#error") == "<b id=injected>x</b>"


def test_unmatched_routes_answer_as_api_gateway_does(runner: Runner) -> None:
    answer = httpx.get(runner.base_url + "/v2/nothing-here")
    wrong_method = httpx.put(runner.base_url + "/v2/external-calendars/providers")

    assert (answer.status_code, answer.json()) == (404, {"message": "Not Found"})
    assert (wrong_method.status_code, wrong_method.json()) == (404, {"message": "Not Found"})


def test_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    second = start_runner(tmp_path)

    assert second.stop() == 0, second.output()

    for port in (
        second.dynamodb_port,
        int(second.base_url.rsplit(":", 1)[1]),
        int(second.sandbox_url.rsplit(":", 1)[1]),
    ):
        with pytest.raises(ConnectionRefusedError):  # DynamoDB Local, the API and the sandbox are gone
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert second.api_key in second.output()  # printed once for the developer
    assert second.output().count(second.api_key) == 1
