"""The API-client command: register prints a working key once, revoke stops it at once."""

from __future__ import annotations

import json

from calendar_connect.api_clients import hash_key
from scripts.clients import main
from tests.support.lambda_runtime import invoke, load_event


def test_register_then_revoke(environment, dynamodb, capsys):
    # Given a client registered with the command
    args = ["--table", "ApiClientsTable", "--endpoint", dynamodb.endpoint]
    assert main([*args, "register", "--name", "Booking site", "--prefix", "https://booking.example.com/calendar/"]) == 0
    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    client_id, api_key = printed["clientId"].strip(), printed["apiKey"].strip()
    # Then only the key's hash is stored
    item = dynamodb.client().get_item(TableName="ApiClientsTable", Key={"clientId": {"S": client_id}})["Item"]
    assert item["keyHash"]["S"] == hash_key(api_key)
    assert api_key not in json.dumps(item)
    # And the key works
    event = load_event("initiate-wix.json")
    event["headers"]["authorization"] = f"Bearer {api_key}"
    assert invoke("InitiateFunction", event)["statusCode"] == 200
    # When it is revoked, Then it no longer does
    assert main([*args, "revoke", client_id]) == 0
    assert invoke("InitiateFunction", event)["statusCode"] == 401
    assert main([*args, "revoke", "nosuchclient"]) == 1


def test_a_bad_prefix_is_refused(environment, dynamodb, capsys):
    args = ["--table", "ApiClientsTable", "--endpoint", dynamodb.endpoint]
    try:
        main([*args, "register", "--name", "x", "--prefix", "http://booking.example.com/"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("an http prefix outside localhost was accepted")
    assert "https" in capsys.readouterr().err
