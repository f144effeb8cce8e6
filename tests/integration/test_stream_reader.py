"""local/streams.py against DynamoDB Local's real streams: what the runner's stand-in for Lambda's event source
mapping hands a function (batches, the event shape), and what it does when the function fails."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.dynamodb import LOCAL_CREDENTIALS, DynamoDBLocal
from local.streams import StreamReader
from local.template import StreamMapping


@pytest.fixture
def table(dynamodb: DynamoDBLocal) -> Iterator[str]:
    name = f"StreamProbe{secrets.token_hex(4)}"
    client = dynamodb.client()
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield name
    client.delete_table(TableName=name)


def reader(dynamodb: DynamoDBLocal, table: str, function: Any, failures: list[Any], **mapping: Any) -> StreamReader:
    settings: dict[str, Any] = {
        "function": "Probe",
        "table": table,
        "batch_size": 3,
        "maximum_retry_attempts": 2,
        "bisect_on_error": False,
        "report_item_failures": True,
        "filters": (),
        **mapping,
    }
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb.endpoint, **LOCAL_CREDENTIALS)
    return StreamReader(dynamodb.client(), streams, StreamMapping(**settings), function, failures.append)


def write(dynamodb: DynamoDBLocal, table: str, *keys: str) -> None:
    for key in keys:
        dynamodb.client().put_item(TableName=table, Item={"k": {"S": key}})


def drain(stream: StreamReader) -> None:
    while stream.poll():
        pass


def keys(event: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["Keys"]["k"]["S"] for r in event["Records"]]


def test_records_arrive_in_batches_in_lambdas_shape(dynamodb, table):
    seen: list[dict[str, Any]] = []
    stream = reader(dynamodb, table, lambda event: seen.append(event) or {"batchItemFailures": []}, [])
    write(dynamodb, table, "a", "b", "c", "d")
    drain(stream)
    assert [keys(e) for e in seen] == [["a", "b", "c"], ["d"]]
    record = seen[0]["Records"][0]
    assert record["eventName"] == "INSERT" and record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == stream.stream_arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    assert record["dynamodb"]["NewImage"] == {"k": {"S": "a"}}


def test_a_reported_item_failure_is_read_again_from_that_record(dynamodb, table):
    seen: list[list[str]] = []
    answers = [{"batchItemFailures": [{"itemIdentifier": None}]}]

    def function(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(keys(event))
        if len(seen) == 1:  # the first time, the second record fails
            answers[0]["batchItemFailures"][0]["itemIdentifier"] = event["Records"][1]["dynamodb"]["SequenceNumber"]
            return answers[0]
        return {"batchItemFailures": []}

    stream = reader(dynamodb, table, function, [])
    write(dynamodb, table, "a", "b", "c")
    drain(stream)
    assert seen == [["a", "b", "c"], ["b", "c"]]


def test_a_batch_that_keeps_failing_is_bisected_then_reported_and_skipped(dynamodb, table):
    failures: list[dict[str, Any]] = []
    seen: list[list[str]] = []

    def function(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(keys(event))
        if "b" in keys(event):
            raise RuntimeError("this record always fails")
        return {"batchItemFailures": []}

    stream = reader(dynamodb, table, function, failures, bisect_on_error=True)
    write(dynamodb, table, "a", "b", "c")
    drain(stream)
    write(dynamodb, table, "d")
    drain(stream)
    assert ["a"] in seen and ["b"] in seen  # halved until the failing record stands alone
    assert len([s for s in seen if s == ["b"]]) == 3  # the first try and MaximumRetryAttempts (2) more
    (failure,) = failures
    assert failure["DDBStreamBatchInfo"]["streamArn"] == stream.stream_arn
    assert seen[-1] == ["d"]  # the stream goes on after it


def test_filters_keep_records_from_the_function(dynamodb, table):
    seen: list[dict[str, Any]] = []
    stream = reader(dynamodb, table, seen.append, [], filters=({"eventName": ["MODIFY", "REMOVE"]},))
    write(dynamodb, table, "a")
    dynamodb.client().delete_item(TableName=table, Key={"k": {"S": "a"}})
    drain(stream)
    assert [r["eventName"] for e in seen for r in e["Records"]] == ["REMOVE"]
    assert "userIdentity" not in seen[0]["Records"][0]  # a deletion by a caller, not by TTL
