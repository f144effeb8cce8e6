"""aws_calls.call's retry rule: transient failures retried while the deadline allows, others raised at once.

DynamoDB Local never throttles, so throttling comes from botocore's Stubber, at the client's edge.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from calendar_connect import aws_calls, deadline
from calendar_connect.errors import StorageUnavailable

KEY = {"clientId": {"S": "c1"}}


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=aws_calls.client_config(1.0, 2.0),
    )
    with Stubber(client) as stubber:
        yield client, stubber


class Context:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


def test_throttling_is_retried_and_then_succeeds(stubbed):
    client, stubber = stubbed
    for _ in range(2):
        stubber.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
    stubber.add_response("get_item", {"Item": KEY})
    assert aws_calls.call(client.get_item, 3.0, TableName="t", Key=KEY)["Item"] == KEY
    stubber.assert_no_pending_responses()


def test_three_transient_failures_are_storage_unavailable(stubbed):
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_client_error("get_item", "InternalServerError", http_status_code=500)
    with pytest.raises(StorageUnavailable):
        aws_calls.call(client.get_item, 3.0, TableName="t", Key=KEY)
    stubber.assert_no_pending_responses()


def test_a_refused_condition_is_raised_at_once_without_a_retry(stubbed):
    client, stubber = stubbed
    stubber.add_client_error("put_item", "ConditionalCheckFailedException", http_status_code=400)
    stubber.add_response("put_item", {})  # would be used by a retry
    with pytest.raises(ClientError):
        aws_calls.call(client.put_item, 3.0, TableName="t", Item=KEY)
    with pytest.raises(AssertionError):
        stubber.assert_no_pending_responses()  # the second answer was never asked for


def test_no_attempt_starts_when_the_deadline_leaves_no_room_for_a_whole_one(stubbed):
    client, stubber = stubbed
    stubber.add_response("get_item", {"Item": KEY})
    # 2.9 s left after the answer margin, and an attempt may take 3 s
    with deadline.invocation(Context(2.9 + deadline.ANSWER_MARGIN_SECONDS)), pytest.raises(StorageUnavailable):
        aws_calls.call(client.get_item, 3.0, TableName="t", Key=KEY)
    with pytest.raises(AssertionError):
        stubber.assert_no_pending_responses()  # never sent


def test_outside_an_invocation_there_is_no_deadline():
    assert deadline.remaining() == float("inf")
    with deadline.invocation(Context(10)):
        assert 9 < deadline.remaining() <= 10 - deadline.ANSWER_MARGIN_SECONDS
    assert deadline.remaining() == float("inf")
