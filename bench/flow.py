"""Events for one connect flow, as API Gateway sends them: initiate, the provider's callback, an access token."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.stack import GOOGLE_CLIENT_ID, Stack
from tests.support.lambda_runtime import invoke, load_event
from tests.support.provider_server import Answer, google_tokens

INITIATE_EVENTS = {"wix": "initiate-wix.json", "teamup": "initiate-teamup-json.json"}


def start_attempt() -> tuple[str, str | None]:
    """Run initiate (Wix, Google) in this process; the (state, nonce) the provider would get."""
    answer = invoke("InitiateFunction", load_event(INITIATE_EVENTS["wix"]))
    assert answer["statusCode"] == 200, answer
    params = {k: v[0] for k, v in parse_qs(urlsplit(json.loads(answer["body"])["oauthUrl"]).query).items()}
    return params["state"], params.get("nonce")


def script_token_answer(stack: Stack, nonce: str | None, account: str = "110169484474386276334") -> None:
    stack.provider.script("/google/token", Answer(body=google_tokens(GOOGLE_CLIENT_ID, nonce, sub=account)))


def callback_event(state: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("callback-success.json"))
    params = dict(event["queryStringParameters"], state=state)
    event["queryStringParameters"] = params
    event["rawQueryString"] = urlencode(params)
    return event


def access_token_event(connection_id: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("connection-access-token.json"))
    old = event["pathParameters"]["connectionId"]
    event["pathParameters"]["connectionId"] = connection_id
    event["rawPath"] = event["rawPath"].replace(old, connection_id)
    event["requestContext"]["http"]["path"] = event["requestContext"]["http"]["path"].replace(old, connection_id)
    return event


def connect(stack: Stack, account: str = "110169484474386276334") -> str:
    """One full connect flow in this process; the connectionId it ends with."""
    state, nonce = start_attempt()
    script_token_answer(stack, nonce, account)
    answer = invoke("CallbackFunction", callback_event(state))
    location = answer.get("headers", {}).get("Location", "")
    found = parse_qs(urlsplit(location).query).get("connectionId")
    assert answer["statusCode"] == 302 and found, answer
    return found[0]
