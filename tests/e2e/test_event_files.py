"""The files in events/ and the local runner speak the same payload 2.0, both ways.

For each file: the HTTP request it stands for, turned back into an event by the runner's gateway,
has the file's keys and value types; and that request sent over HTTP to a running runner is
routed to the file's route and handled by its function (no gateway 404, no 5xx).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.apigw import Router, build_event, request_from_event
from local.template import ROOT, load_template, routes
from tests.e2e.conftest import Runner, start_runner
from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_PREFIX

EVENT_FILES = sorted((ROOT / "events").glob("*.json"))
# Values that differ from request to request by nature; their keys and types still must match.
PER_REQUEST = {("requestContext", "requestId"), ("requestContext", "time"), ("requestContext", "timeEpoch")}
# API Gateway's domainName is a bare host name; the files may carry the local port in it.
HOST_DERIVED = {("requestContext", "domainName"), ("requestContext", "domainPrefix")}
# Either encoding is valid for text bodies; the decoded bytes are compared instead.
ENCODING = {("body",), ("isBase64Encoded",)}


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _differences(expected: Any, actual: Any, where: tuple[str, ...] = ()) -> list[str]:
    if type(expected) is not type(actual):
        return [f"{'.'.join(where)}: {type(expected).__name__} in the file, {type(actual).__name__} from the runner"]
    if isinstance(expected, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual or key not in expected:
                side = "the runner" if key not in actual else "the file"
                found.append(f"{'.'.join((*where, key))}: missing from {side}")
            else:
                found.extend(_differences(expected[key], actual[key], (*where, key)))
        return found
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{'.'.join(where)}: {len(expected)} items in the file, {len(actual)} from the runner"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _differences(e, a, (*where, str(i)))
        ]
    if where in PER_REQUEST | HOST_DERIVED | ENCODING or expected == actual:
        return []
    return [f"{'.'.join(where)}: {expected!r} in the file, {actual!r} from the runner"]


def _body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def test_there_are_event_files() -> None:
    assert EVENT_FILES, "events/ holds one payload-2.0 event per scenario"


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_the_runner_builds_the_same_event_from_the_same_request(path: Path) -> None:
    event = _load(path)
    request = request_from_event(event)
    match = Router(routes(load_template())).match(request.method, request.path)
    assert match is not None, f"{event['routeKey']} is not a route of template.yaml"

    built = build_event(request, match)

    assert built["routeKey"] == event["routeKey"]
    assert _differences(event, built) == []
    assert _body(built) == _body(event)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    # The dev client is the one the event files' key belongs to.
    running = start_runner(
        tmp_path_factory.mktemp("runner"), LOCAL_API_KEY=EXAMPLE_API_KEY, LOCAL_REDIRECT_PREFIXES=EXAMPLE_PREFIX
    )
    yield running
    assert running.stop() == 0, running.output()


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_the_functions_handle_each_files_request_sent_through_the_runner(path: Path, runner: Runner) -> None:
    event = _load(path)
    headers = {k: v for k, v in event["headers"].items() if k not in ("host", "content-length")}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    query = f"?{event['rawQueryString']}" if event.get("rawQueryString") else ""

    answer = httpx.request(
        event["requestContext"]["http"]["method"],
        runner.base_url + event["rawPath"] + query,
        headers=headers,
        content=_body(event),
        follow_redirects=False,
        timeout=30,
    )

    assert answer.status_code < 500, answer.text
    if answer.headers.get("content-type", "").startswith("application/json"):
        assert answer.json() != {"message": "Not Found"}, "the gateway found no route"
