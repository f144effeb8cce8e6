"""`make run` prints one line per finished attempt (attempt id, provider, dialect, outcome, reason, duration),
read from the flow's own log line by a handler the local gateway installs."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from calendar_connect.dialects import Dialect
from calendar_connect.observability import attempt_id, logger
from calendar_connect.secret_hashes import hash_secret
from local.gateway import AttemptSummaries, Gateway, print_attempt_summaries
from tests.integration.test_callback import callback, connected, failed, start, tokens_for
from tests.support.provider_server import Answer

pytestmark = pytest.mark.usefixtures("example_client")


@pytest.fixture
def summaries() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = print_attempt_summaries(stream)
    yield stream
    logger.removeHandler(handler)


def test_each_finished_attempt_is_one_summary_line_without_secrets(environment, provider_server, summaries):
    # Given an attempt that connects and one whose token exchange fails
    good = start("google", Dialect.WIX)
    provider_server.script("/google/token", Answer(200, tokens_for(good)))
    connected(callback({"state": good.state, "code": "secret-code-1"}), Dialect.WIX)
    bad = start("microsoft", Dialect.TEAMUP)
    provider_server.script("/microsoft/token", Answer(500, {"error": "server_error"}))
    assert failed(callback({"state": bad.state, "code": "secret-code-2"}), Dialect.TEAMUP) == (
        "internal",
        "token_exchange_failed",
    )
    # When the summaries are read
    lines = summaries.getvalue().splitlines()
    # Then there is one line per attempt, naming it by its id, with what CloudWatch would count
    assert len(lines) == 2
    assert re.fullmatch(
        rf"attempt {attempt_id(hash_secret(good.state))}: google/wix connected \(none\) after \d+ s", lines[0]
    )
    assert re.fullmatch(
        rf"attempt {attempt_id(hash_secret(bad.state))}: microsoft/teamup internal \(token_exchange_failed\) after \d+ s",
        lines[1],
    )
    # And no state or code
    for secret in (good.state, bad.state, "secret-code-1", "secret-code-2"):
        assert secret not in summaries.getvalue()


def test_the_local_gateway_installs_the_summaries_once(summaries):
    Gateway([], {})
    Gateway([], {})
    assert sum(isinstance(h, AttemptSummaries) for h in logger.handlers) == 1
