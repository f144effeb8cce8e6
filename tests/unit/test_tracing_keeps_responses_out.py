"""Traces never carry a handler's response: it holds attempt URLs, binding cookies and access tokens.

Powertools' Tracer records the decorated handler's return value as X-Ray metadata unless told not to. Each
function runs in a fresh interpreter with tracing on, as deployed (`Tracing: Active`), and a sampled trace id;
a UDP socket in this test stands in for the X-Ray daemon and receives what the SDK sends.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from local.template import ROOT
from tests.support.lambda_runtime import run_in_fresh_interpreter

_INVOKE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import app
from local.gateway import LambdaContext
event = json.loads(sys.argv[2])
answer = app.lambda_handler(event, LambdaContext("traced", 1024, 20))
print(json.dumps(answer))
"""


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def _traced_invoke(daemon: socket.socket, function_dir: str, event: dict) -> tuple[dict, list[dict]]:
    answer = run_in_fresh_interpreter(
        function_dir,
        _INVOKE,
        json.dumps(event),
        env={"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}"},
    )
    # The subprocess has ended: everything it sent is in the socket's buffer. The handler's own subsegment
    # is the last thing it sends.
    documents: list[dict] = []
    while not any(doc.get("name") == "## lambda_handler" for doc in documents):
        header, _, body = daemon.recv(65536).decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        documents.append(json.loads(body))
    return answer, documents


def _assert_no_response_in(documents: list[dict], answer: dict) -> None:
    handler = next(doc for doc in documents if doc["name"] == "## lambda_handler")
    assert handler["trace_id"] == "1-67891233-abcdef012345678912345678"  # traced for real, as in Lambda
    assert "lambda_handler response" not in json.dumps(handler.get("metadata", {}))
    sent = json.dumps(documents)
    assert answer["body"] not in sent and json.dumps(answer["body"])[1:-1] not in sent


def test_the_management_api_sends_no_response_to_x_ray(daemon: socket.socket) -> None:
    # No key: answered without DynamoDB, a 401 with the contract's error body.
    event = json.loads((ROOT / "events" / "initiate-missing-key.json").read_text())
    answer, documents = _traced_invoke(daemon, "initiate", event)
    assert answer["statusCode"] == 401 and answer["body"]
    _assert_no_response_in(documents, answer)


def test_the_browser_endpoints_send_no_response_to_x_ray(daemon: socket.socket) -> None:
    event = json.loads((ROOT / "events" / "start-attempt.json").read_text())
    event["queryStringParameters"] = {}
    event["rawQueryString"] = ""  # no attempt: answered without DynamoDB, an HTML page
    answer, documents = _traced_invoke(daemon, "callback", event)
    assert answer["statusCode"] == 400 and answer["body"]
    _assert_no_response_in(documents, answer)
