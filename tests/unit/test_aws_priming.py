"""aws_priming: botocore's first call of each operation made before a snapshot, answered in-process (issue 16)."""

from __future__ import annotations

import datetime
import socket
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import EndpointConnectionError

from calendar_connect import aws_priming
from calendar_connect.settings import Settings


class _ExpiredCredentials(CredentialProvider):
    """Credentials that are past their expiry: any read of them refreshes, and each refresh is counted."""

    METHOD = "expired-for-the-test"
    CANONICAL_NAME = "expired-for-the-test"

    def __init__(self) -> None:
        self.refreshes = 0

    @staticmethod
    def _metadata(expires_in: datetime.timedelta) -> dict[str, str]:
        expiry = datetime.datetime.now(datetime.UTC) + expires_in
        return {"access_key": "AKIDTEST", "secret_key": "secret", "token": "token", "expiry_time": expiry.isoformat()}

    def _refresh(self) -> dict[str, str]:
        self.refreshes += 1
        return self._metadata(datetime.timedelta(hours=1))

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(
            self._metadata(datetime.timedelta(hours=-1)), self._refresh, self.METHOD
        )


def _refused_endpoint() -> str:
    """An address where nothing listens: a call that reaches the wire fails there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def dynamodb() -> tuple[Any, _ExpiredCredentials]:
    session = boto3.Session(region_name="us-east-1")
    provider = _ExpiredCredentials()
    session._session.get_component("credential_provider").insert_before("env", provider)
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1)
    return session.client("dynamodb", endpoint_url=_refused_endpoint(), config=config), provider


def test_priming_sets_up_each_operation_without_the_wire_or_the_credentials(dynamodb):
    client, credentials = dynamodb
    # When the DAL's operations are primed through a client whose endpoint refuses connections
    aws_priming.prime(client, aws_priming.dynamodb_calls(["connections"]))
    # Then each operation's request and answer shapes are resolved, and its credentials were never read
    for operation in ("GetItem", "PutItem", "UpdateItem", "Query"):
        model = vars(client.meta.service_model.operation_model(operation))
        assert "input_shape" in model and "output_shape" in model, operation
    assert credentials.refreshes == 0
    # And the next call is the client's own again: signed with its credentials, sent, refused
    with pytest.raises(EndpointConnectionError):
        client.get_item(TableName="connections", Key={"connectionId": {"S": "c1"}})
    assert credentials.refreshes == 1


def test_the_webhook_deliveries_table_is_primed_only_where_it_is_set():
    settings = Settings(PENDING_TABLE="p", CONNECTIONS_TABLE="c", API_CLIENTS_TABLE="a")
    tables = {request["TableName"] for _, request, _ in aws_priming.storage_calls(settings)}
    assert tables == {"p", "c", "a"}


def test_a_call_botocore_refuses_is_skipped_and_the_others_still_primed(dynamodb, caplog):
    client, _ = dynamodb
    refused = ("Query", {"TableName": "connections", "IndexName": "x", "KeyConditionExpression": "k = :k"}, {})
    calls = [refused, *aws_priming.dynamodb_calls(["connections"])[:1]]
    # When one primed call is one botocore refuses (here an index name shorter than the model allows)
    aws_priming.prime(client, calls)
    # Then priming goes on (a speed-up never fails the snapshot), says which operation it skipped, and primes the rest
    assert "an operation was not primed" in caplog.text
    assert "output_shape" in vars(client.meta.service_model.operation_model("GetItem"))
