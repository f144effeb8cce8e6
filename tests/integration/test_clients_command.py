"""The API-client command: register prints a working key once, revoke stops it at once."""

from __future__ import annotations

import json

import pytest

from calendar_connect.secret_hashes import hash_secret
from scripts.clients import main
from tests.support.lambda_runtime import invoke, load_event

EXAMPLE = "https://booking.example.com/calendar/"


def test_register_then_revoke(environment, dynamodb, capsys):
    # Given a client registered with the command
    args = ["--table", "ApiClientsTable", "--endpoint", dynamodb.endpoint]
    assert main([*args, "register", "--name", "Booking site", "--prefix", "https://booking.example.com/calendar/"]) == 0
    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    client_id, api_key = printed["clientId"].strip(), printed["apiKey"].strip()
    # Then only the key's hash is stored
    item = dynamodb.client().get_item(TableName="ApiClientsTable", Key={"clientId": {"S": client_id}})["Item"]
    assert item["keyHash"]["S"] == hash_secret(api_key)
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
    with pytest.raises(SystemExit) as exit_:  # an http prefix outside localhost is refused
        main([*args, "register", "--name", "x", "--prefix", "http://booking.example.com/"])
    assert exit_.value.code == 2
    assert "https" in capsys.readouterr().err


def test_a_deployed_table_without_a_region_says_how_to_name_one(environment, monkeypatch, tmp_path, capsys):
    # Given a shell with no AWS region anywhere
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    # When a deployed table is named without --region, Then the command says what to add (no NoRegionError)
    with pytest.raises(SystemExit) as exit_:
        main(["--table", "calendar-connect-ApiClientsTable-X", "register", "--name", "x", "--prefix", EXAMPLE])
    assert exit_.value.code == 2
    assert "--region" in capsys.readouterr().err


def test_without_a_table_it_registers_in_make_runs_dynamodb(environment, dynamodb, monkeypatch, capsys):
    # Given make run's DynamoDB Local (here: the test's), named only by its port
    monkeypatch.setenv("DYNAMODB_PORT", dynamodb.endpoint.rsplit(":", 1)[1])
    monkeypatch.delenv("API_CLIENTS_TABLE", raising=False)
    assert main(["register", "--name", "Local site", "--prefix", EXAMPLE]) == 0
    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    item = dynamodb.client().get_item(TableName="ApiClientsTable", Key={"clientId": {"S": printed["clientId"].strip()}})
    assert item["Item"]["keyHash"]["S"] == hash_secret(printed["apiKey"].strip())
