"""An attempt whose API client is revoked before its callback: no code is redeemed, no token obtained or stored,
and the browser goes back with error=internal&reason=client_revoked, in both dialects."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from calendar_connect.dialects import Dialect
from tests.conftest import GOOGLE_CLIENT_ID
from tests.integration.test_callback import (
    CLAIM,
    RETURN_URL,
    callback,
    connections_in,
    dynamodb_calls,
    failed,
    operations,
    pending_item,
)
from tests.support.lambda_runtime import invoke, json_body, load_event
from tests.support.provider_server import Answer, google_tokens


def start_as(key: str, dialect: Dialect, provider_server: Any) -> str:
    """Initiate (Google) with this API key, the token endpoint ready to grant everything; the attempt's state."""
    if dialect is Dialect.WIX:
        event = load_event("initiate-wix.json")
        event["body"] = json.dumps({"providerId": "google", "scheduleId": "s-revoked", "redirectUrl": RETURN_URL})
    else:
        event = load_event("initiate-teamup-json.json")
        event["body"] = json.dumps({"calendar_source": "GOOG", "redirect_uri": RETURN_URL})
    event["headers"]["authorization"] = f"Bearer {key}"
    body = json_body(invoke("InitiateFunction", event))
    params = {k: v[0] for k, v in parse_qs(urlsplit(body.get("oauthUrl") or body["uri"]).query).items()}
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, params["nonce"])))
    return params["state"]


@pytest.mark.parametrize("dialect", [Dialect.WIX, Dialect.TEAMUP])
def test_a_callback_after_the_client_was_revoked_obtains_and_stores_nothing(
    dialect, api_client, storage, provider_server, dynamodb
):
    # Given an attempt started by a client that is revoked before the person comes back
    client, key = api_client
    state = start_as(key, dialect, provider_server)
    storage.api_clients.revoke(client.clientId)
    before = len(connections_in(dynamodb))
    # When the provider sends the browser back with a code
    with dynamodb_calls() as calls:
        answer = callback({"state": state, "code": "code-for-a-revoked-client"})
    # Then the browser goes home with client_revoked, and no code was redeemed: no token exists to revoke
    assert failed(answer, dialect) == ("internal", "client_revoked")
    assert provider_server.requests_to("/google/token") == []
    assert provider_server.requests_to("/google/revoke") == []
    assert len(connections_in(dynamodb)) == before
    assert operations(calls) == [CLAIM, ("GetItem", "ApiClientsTable"), CLAIM]
    # And the outcome is recorded, so a repeated callback replays it
    item = pending_item(dynamodb, state)
    assert item is not None and item["outcome"]["M"]["reason"]["S"] == "client_revoked"
    assert failed(callback({"state": state, "code": "again"}), dialect) == ("internal", "client_revoked")


def test_a_callback_whose_client_no_longer_exists_is_refused_too(api_client, storage, dynamodb, provider_server):
    client, key = api_client
    state = start_as(key, Dialect.WIX, provider_server)
    dynamodb.client().delete_item(TableName="ApiClientsTable", Key={"clientId": {"S": client.clientId}})
    assert failed(callback({"state": state, "code": "c"}), Dialect.WIX) == ("internal", "client_revoked")
    assert provider_server.requests_to("/google/token") == []


def test_the_check_reads_only_whether_the_client_is_revoked_at_half_a_read_unit(api_client, storage):
    client, _ = api_client
    with dynamodb_calls() as calls:
        assert storage.api_clients.is_active(client.clientId)
    (call,) = calls
    assert call.params.get("ConsistentRead") is not True  # eventually consistent: 0.5 RCU
    assert call.params["ProjectionExpression"] == "clientId, revoked"  # never the key hash
    assert call.consumed["CapacityUnits"] == 0.5
    storage.api_clients.revoke(client.clientId)
    assert not storage.api_clients.is_active(client.clientId)
