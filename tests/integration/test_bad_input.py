"""Bad input gets a 4xx in the contract's shape, never a 5xx; every management answer is `no-store`; 401 says Bearer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_connections import event_connection  # noqa: F401 - the connection the events name
from tests.support.lambda_runtime import invoke, json_body, load_event

pytestmark = pytest.mark.usefixtures("example_client")


def nested(depth: int) -> str:
    """A JSON object `depth` levels deep: {"a": {"a": ... {} ...}}."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def depth_violations(answer: dict[str, Any]) -> list[dict[str, str]]:
    body = json_body(answer)
    violations = body["details"].get("validationError", {}).get("fieldViolations", [])
    return [v for v in violations if v["field"] == "body" and "nested" in v["description"]]


def pending_count(dynamodb: Any) -> int:
    return len(dynamodb.client().scan(TableName="PendingAuthorizationsTable", ConsistentRead=True)["Items"])


@pytest.mark.parametrize("event_file", ["initiate-wix.json", "initiate-teamup-json.json"])
@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_a_body_nested_deeper_than_32_levels_is_400_and_writes_nothing(dynamodb, log_lines, event_file, depth):
    # Given a JSON body nested too deep, on each dialect's JSON route
    event = load_event(event_file)
    event["body"] = nested(depth)[:15_000] if depth > 1000 else nested(depth)
    before = pending_count(dynamodb)
    # When it is sent
    answer = invoke("InitiateFunction", event)
    # Then it is a 400 INVALID_ARGUMENT naming the body, nothing is written and nothing logged as an error
    assert answer["statusCode"] == 400, answer["body"]
    assert json_body(answer)["details"]["applicationError"]["code"] == "INVALID_ARGUMENT"
    assert depth_violations(answer)
    assert pending_count(dynamodb) == before
    assert "Traceback" not in log_lines() and "unexpected error" not in log_lines()


@pytest.mark.parametrize("event_file", ["initiate-wix.json", "initiate-teamup-json.json"])
def test_32_levels_are_not_refused_for_their_depth(event_file):
    event = load_event(event_file)
    body = json.loads(event["body"])
    body["extra"] = json.loads(nested(31))  # 32 levels with the body itself
    event["body"] = json.dumps(body)
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 400  # the unknown field, not the depth
    assert not depth_violations(answer)


@pytest.mark.parametrize("schedule_id", ["a b", "<script>", "x" * 201, "s\u00e9"])
def test_the_list_routes_schedule_id_is_validated_like_initiates(schedule_id):
    event = load_event("connections-list.json")
    event["queryStringParameters"] = {"scheduleId": schedule_id}
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 400, answer["body"]
    violations = json_body(answer)["details"]["validationError"]["fieldViolations"]
    assert [v["field"] for v in violations] == ["scheduleId"]
    # the same value is refused by initiate
    initiate = load_event("initiate-wix.json")
    initiate["body"] = json.dumps(
        {"providerId": "google", "scheduleId": schedule_id, "redirectUrl": "https://booking.example.com/calendar/"}
    )
    assert invoke("InitiateFunction", initiate)["statusCode"] == 400


@pytest.mark.parametrize("header", [None, "Bearer cc_nosuchclient_" + "A" * 43, "Basic abc"])
def test_every_401_carries_www_authenticate_bearer(header):
    event = load_event("providers-list.json")
    event["headers"].pop("authorization", None)
    if header:
        event["headers"]["authorization"] = header
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 401
    assert answer["headers"]["WWW-Authenticate"] == "Bearer"
    assert answer["headers"]["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "event_file",
    [
        "initiate-wix.json",
        "initiate-teamup-json.json",
        "initiate-teamup-xml.json",
        "initiate-invalid-body.json",
        "initiate-missing-key.json",
        "providers-list.json",
        "connections-list.json",
        "connection-get.json",
        "connection-delete.json",
        "connection-access-token.json",
    ],
)
@pytest.mark.usefixtures("event_connection")
def test_every_management_answer_is_no_store(event_file):
    # Whatever the route and outcome (200, 4xx), the answer must not be cached by anyone in between.
    answer = invoke("InitiateFunction", load_event(event_file))
    assert answer["statusCode"] in (200, 400, 401), answer["body"]
    assert answer["headers"]["Cache-Control"] == "no-store", (event_file, answer["statusCode"])


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("multipart/form-data", "providerId=google", False),  # no boundary: Powertools cannot split it
        ("application/json", "/w==", True),  # bytes that are not UTF-8
    ],
)
@pytest.mark.parametrize("event_file", ["initiate-wix.json", "webhook-put.json"])
def test_a_body_powertools_cannot_read_is_a_400_malformed_body(
    event_file, content_type, body, base64_encoded, log_lines
):
    # Given a JSON route's body its parser cannot read
    event = load_event(event_file)
    event["headers"]["content-type"] = content_type
    event["body"], event["isBase64Encoded"] = body, base64_encoded
    # When it is sent
    answer = invoke("InitiateFunction", event)
    # Then it is the caller's malformed body (400), not an internal error, and nothing is logged as one
    assert answer["statusCode"] == 400, answer["body"]
    violations = json_body(answer)["details"]["validationError"]["fieldViolations"]
    assert violations == [{"field": "body", "description": "malformed body"}]
    assert answer["headers"]["Cache-Control"] == "no-store"
    assert "unexpected error" not in log_lines()


def test_a_bug_of_ours_before_routing_fails_the_invocation_so_the_errors_alarm_counts_it(monkeypatch):
    # Given code before routing that fails in a way no domain error says (a bug, not bad input or an outage)
    from tests.support.lambda_runtime import handler_module

    app = handler_module("InitiateFunction")

    def broken(*_: Any) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(app, "authenticate", broken)
    # When a request comes in, then the invocation fails (a Lambda error, as before the refactor), not a quiet 500
    with pytest.raises(RuntimeError, match="a bug of ours"):
        invoke("InitiateFunction", load_event("providers-list.json"))
