"""A return URL never leaves its client's prefix: dot segments (in any percent-encoding) are resolved before the
prefix check, through both dialects and every body type, and the callback redirects to the normalised URL."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from calendar_connect.secret_hashes import hash_secret
from tests.support.lambda_runtime import invoke, json_body, load_event

pytestmark = pytest.mark.usefixtures("example_client")  # allowed https://booking.example.com/calendar/

OUTSIDE = [
    "https://booking.example.com/calendar/../admin",
    "https://booking.example.com/calendar/%2e%2e/admin",
    "https://booking.example.com/calendar/.%2e/admin",
    "https://booking.example.com/calendar/%2E%2E/admin",
    "https://booking.example.com/calendar/./../admin",
    "https://booking.example.com/calendar/x/%2E%2E/%2e./admin?keep=1",
]
INSIDE = {
    "https://booking.example.com/calendar/x/../done?tab=staff": "https://booking.example.com/calendar/done?tab=staff",
    "https://booking.example.com/calendar/./%2e/x/%2E%2E/done": "https://booking.example.com/calendar/done",
}


def _multipart(fields: dict[str, str]) -> tuple[str, str]:
    boundary = "----cc-test-boundary-4f1d"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    body = f"{parts}--{boundary}--\r\n"
    return f"multipart/form-data; boundary={boundary}", base64.b64encode(body.encode()).decode()


def initiate_event(body_type: str, return_url: str) -> dict[str, Any]:
    """An initiate event of the given dialect and body type, asking for Google with `return_url`."""
    if body_type == "wix-json":
        event = load_event("initiate-wix.json")
        event["body"] = json.dumps({"providerId": "google", "scheduleId": "s-norm", "redirectUrl": return_url})
        return event
    fields = {"calendar_source": "GOOG", "redirect_uri": return_url}
    event = load_event("initiate-teamup-json.json")
    event["isBase64Encoded"] = False
    if body_type == "teamup-json":
        event["headers"]["content-type"] = "application/json"
        event["body"] = json.dumps(fields)
    elif body_type == "teamup-form":
        event["headers"]["content-type"] = "application/x-www-form-urlencoded"
        event["body"] = urlencode(fields)
    else:
        event["headers"]["content-type"], event["body"] = _multipart(fields)
        event["isBase64Encoded"] = True
    return event


BODY_TYPES = pytest.mark.parametrize("body_type", ["wix-json", "teamup-json", "teamup-form", "teamup-multipart"])


def pending_count(dynamodb: Any) -> int:
    return len(dynamodb.client().scan(TableName="PendingAuthorizationsTable", ConsistentRead=True)["Items"])


@BODY_TYPES
@pytest.mark.parametrize("return_url", OUTSIDE)
def test_a_return_url_resolving_outside_the_prefix_is_403_and_stores_nothing(body_type, return_url, dynamodb):
    before = pending_count(dynamodb)

    answer = invoke("InitiateFunction", initiate_event(body_type, return_url))

    assert answer["statusCode"] == 403, answer["body"]
    assert json_body(answer)["details"]["applicationError"]["code"] == "PERMISSION_DENIED"
    assert pending_count(dynamodb) == before


@BODY_TYPES
@pytest.mark.parametrize(("return_url", "normalised"), INSIDE.items())
def test_the_normalised_return_url_is_stored_and_redirected_to(body_type, return_url, normalised, dynamodb):
    # Given an initiate whose return URL resolves inside the prefix
    answer = invoke("InitiateFunction", initiate_event(body_type, return_url))
    assert answer["statusCode"] == 200, answer["body"]
    body = json_body(answer)
    state = parse_qs(urlsplit(body.get("oauthUrl") or body["uri"]).query)["state"][0]
    # Then the attempt keeps the normalised URL
    item = dynamodb.client().get_item(
        TableName="PendingAuthorizationsTable", Key={"stateHash": {"S": hash_secret(state)}}, ConsistentRead=True
    )["Item"]
    assert item["returnUrl"]["S"] == normalised
    # And the callback sends the browser there, the URL's own query kept
    event = load_event("callback-denied.json")
    event["queryStringParameters"] = {"state": state, "error": "access_denied"}
    event["rawQueryString"] = urlencode(event["queryStringParameters"])
    redirect = invoke("CallbackFunction", event)
    assert redirect["statusCode"] == 302
    location = urlsplit(redirect["headers"]["Location"])
    expected = urlsplit(normalised)
    assert (location.scheme, location.netloc, location.path) == (expected.scheme, expected.netloc, expected.path)
    assert location.path.startswith("/calendar/")
    query = parse_qs(location.query)
    assert query["reason"] == ["access_denied"]
    for key, values in parse_qs(expected.query).items():
        assert query[key] == values
