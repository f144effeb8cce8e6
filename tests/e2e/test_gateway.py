"""The local API Gateway over real HTTP: the event a function receives, and how its answer reaches the client.

A probe function stands where a handler would: it answers with the event it received, or with an
answer the test scripts, so both directions of the translation are observable over a real socket.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from local.gateway import Gateway, LoadedFunction
from local.serving import ServerThread
from local.template import Route

ROUTES = [
    Route("GET", "/v2/things", "Probe"),
    Route("POST", "/v2/things", "Probe"),
    Route("GET", "/v2/things/{thingId}", "Probe"),
    Route("GET", "/v2/things/special", "Probe"),
    Route("DELETE", "/v2/things/{thingId}/parts/{partId}", "Probe"),
]


class Probe:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer: Any = None

    def lambda_handler(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if self.answer is not None:
            return self.answer
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def gateway(probe: Probe) -> Iterator[str]:
    module: Any = SimpleNamespace(lambda_handler=lambda event, context: probe.lambda_handler(event, context))
    function = LoadedFunction("Probe", module, "lambda_handler", memory_mb=512, timeout_seconds=20)
    server = ServerThread(Gateway(ROUTES, {"Probe": function}, verbose_errors=False), quiet=True).start()
    yield server.url
    server.stop()


def test_a_request_becomes_a_payload_2_event(gateway: str, probe: Probe) -> None:
    httpx.get(
        gateway + "/v2/things?b=2&a=1&a=x%2Cy&empty=",
        headers=[("X-Repeated", "one"), ("X-Repeated", "two"), ("Cookie", "k1=v1; k2=v2"), ("User-Agent", "e2e")],
    )

    event = probe.events[-1]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v2/things"
    assert event["rawPath"] == "/v2/things"
    assert event["rawQueryString"] == "b=2&a=1&a=x%2Cy&empty="
    assert event["queryStringParameters"] == {"b": "2", "a": "1,x,y", "empty": ""}  # repeated keys comma-joined
    assert event["headers"]["x-repeated"] == "one,two"
    assert all(name == name.lower() for name in event["headers"])
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["k1=v1", "k2=v2"]
    assert "pathParameters" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/v2/things",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "e2e",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /v2/things"
    assert context["domainName"] == "127.0.0.1"
    assert isinstance(context["timeEpoch"], int)
    assert context["requestId"]
    lambda_context = probe.contexts[-1]
    assert lambda_context.function_name == "Probe"
    assert lambda_context.memory_limit_in_mb == 512
    assert lambda_context.invoked_function_arn.endswith(":function:Probe")
    assert lambda_context.aws_request_id
    assert 0 < lambda_context.get_remaining_time_in_millis() <= 20_000


def test_each_request_has_its_own_request_id(gateway: str, probe: Probe) -> None:
    httpx.get(gateway + "/v2/things")
    httpx.get(gateway + "/v2/things")

    first, second = probe.events
    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]
    assert probe.contexts[0].aws_request_id != probe.contexts[1].aws_request_id


def test_path_parameters_and_exact_routes_first(gateway: str, probe: Probe) -> None:
    httpx.get(gateway + "/v2/things/special")
    httpx.get(gateway + "/v2/things/abc-123")
    httpx.delete(gateway + "/v2/things/t1/parts/p2")

    special, thing, part = probe.events
    assert special["routeKey"] == "GET /v2/things/special"
    assert "pathParameters" not in special
    assert thing["routeKey"] == "GET /v2/things/{thingId}"
    assert thing["pathParameters"] == {"thingId": "abc-123"}
    assert part["pathParameters"] == {"thingId": "t1", "partId": "p2"}


def test_text_bodies_arrive_as_text_and_others_base64(gateway: str, probe: Probe) -> None:
    binary = bytes(range(256))
    httpx.post(gateway + "/v2/things", json={"name": "é"})
    httpx.post(gateway + "/v2/things", content=binary, headers={"Content-Type": "application/octet-stream"})

    text, raw = probe.events
    assert (text["body"], text["isBase64Encoded"]) == ('{"name":"é"}', False)
    assert raw["isBase64Encoded"] is True
    assert base64.b64decode(raw["body"]) == binary


def test_unmatched_routes_answer_404_without_invoking(gateway: str, probe: Probe) -> None:
    for method, path in [("GET", "/nowhere"), ("PUT", "/v2/things"), ("GET", "/v2/things/a/b")]:
        answer = httpx.request(method, gateway + path)
        assert (answer.status_code, answer.json()) == (404, {"message": "Not Found"})
    assert probe.events == []


def test_the_answer_becomes_the_http_response(gateway: str, probe: Probe) -> None:
    probe.answer = {
        "statusCode": 302,
        "headers": {"Location": "http://127.0.0.1/back", "Cache-Control": "no-store"},
        "cookies": ["a=1; Path=/; HttpOnly", "b=2; Path=/x"],
        "body": "",
        "isBase64Encoded": False,
    }

    answer = httpx.get(gateway + "/v2/things")

    assert answer.status_code == 302
    assert answer.headers["location"] == "http://127.0.0.1/back"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/x"]


def test_base64_answers_are_decoded(gateway: str, probe: Probe) -> None:
    probe.answer = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(b"\x89PNG\x00\xff").decode(),
        "isBase64Encoded": True,
    }

    assert httpx.get(gateway + "/v2/things").content == b"\x89PNG\x00\xff"


def test_an_answer_without_status_code_is_inferred_as_200_json(gateway: str, probe: Probe) -> None:
    probe.answer = {"hello": "world"}

    answer = httpx.get(gateway + "/v2/things")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"hello": "world"}


def test_a_failing_function_is_a_bare_500(gateway: str, probe: Probe) -> None:
    def fail(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("secret detail")

    probe.lambda_handler = fail  # type: ignore[method-assign]

    answer = httpx.get(gateway + "/v2/things")

    assert (answer.status_code, answer.json()) == (500, {"message": "Internal Server Error"})
    assert "secret detail" not in answer.text
