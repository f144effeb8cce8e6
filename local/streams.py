"""DynamoDB Streams read from DynamoDB Local and handed to a function as Lambda's event source mapping does.

Batches of at most BatchSize records in the event shape Lambda sends ({"Records": [...]}, eventSourceARN,
ApproximateCreationDateTime in epoch seconds), the mapping's filter patterns, ReportBatchItemFailures (the stream
is read again from the first failed record), retries of a failing batch (halved each time when
BisectBatchOnFunctionError is set) up to MaximumRetryAttempts, then the on-failure handling with the batch's
shard and sequence range, as an OnFailure destination receives it.

DynamoDB Local runs TTL deletions itself, but its stream records them with eventName "UNKNOWN_TO_SDK_VERSION"
and no userIdentity. They are passed on as DynamoDB's own TTL deletions look: eventName REMOVE and
userIdentity {type: Service, principalId: dynamodb.amazonaws.com}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from local.template import StreamMapping

TTL_DELETION = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
_KNOWN_EVENTS = ("INSERT", "MODIFY", "REMOVE")


def lambda_record(raw: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda passes it to the function."""
    change = dict(raw["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    record = {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion", "us-east-1"),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }
    if raw.get("userIdentity"):
        record["userIdentity"] = raw["userIdentity"]
    elif record["eventName"] not in _KNOWN_EVENTS and "OldImage" in change and "NewImage" not in change:
        record["eventName"] = "REMOVE"  # DynamoDB Local's TTL deletion
        record["userIdentity"] = dict(TTL_DELETION)
    return record


def _matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    """Lambda's filter patterns, as far as the template uses them: top-level fields, each a list of values."""
    return all(record.get(key) in values for key, values in pattern.items())


class StreamReader:
    """One event source mapping over one table's stream. `poll()` hands on what is there; call it in a loop."""

    def __init__(
        self,
        dynamodb: Any,
        streams: Any,
        mapping: StreamMapping,
        invoke: Callable[[dict[str, Any]], Any],
        on_failure: Callable[[dict[str, Any]], None],
        starting_position: str = "TRIM_HORIZON",
    ) -> None:
        self.mapping = mapping
        self._streams = streams
        self._invoke = invoke
        self._on_failure = on_failure
        self.stream_arn = dynamodb.describe_table(TableName=mapping.table)["Table"]["LatestStreamArn"]
        # Where each shard is read from next: (AT|AFTER_SEQUENCE_NUMBER, sequence), or None for its start. Iterators
        # are made anew for every read: DynamoDB Local's kept ones can fail with TrimmedDataAccessException once
        # other tables have been written to (its sequence numbers are shared by all tables).
        self._positions: dict[str, tuple[str, str] | None] = {}
        self._closed: set[str] = set()
        self._retries: dict[tuple[str, str], int] = {}
        for shard in self._shards():
            self._positions[shard] = None
            if starting_position == "LATEST":
                while self._read(shard, 1000):
                    pass

    def _shards(self) -> list[str]:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [s["ShardId"] for s in description["Shards"]]

    def _read(self, shard: str, limit: int) -> list[dict[str, Any]]:
        """The next records of a shard, its position moved past them."""
        request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard}
        position = self._positions.get(shard)
        if position is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request["ShardIteratorType"], request["SequenceNumber"] = position
        iterator = self._streams.get_shard_iterator(**request)["ShardIterator"]
        answer = self._streams.get_records(ShardIterator=iterator, Limit=limit)
        records = list(answer.get("Records", []))
        if records:
            self._positions[shard] = ("AFTER_SEQUENCE_NUMBER", records[-1]["dynamodb"]["SequenceNumber"])
        elif answer.get("NextShardIterator") is None:
            self._closed.add(shard)  # read to its end, and no more will come
        return records

    def poll(self) -> int:
        """One read of every shard; answers how many records were read (filtered out ones included)."""
        read = 0
        for shard in self._shards():
            self._positions.setdefault(shard, None)  # a new shard: from its start
            if shard in self._closed:
                continue
            raw = self._read(shard, self.mapping.batch_size)
            read += len(raw)
            if raw:
                self._deliver(shard, [lambda_record(r, self.stream_arn) for r in raw])
        return read

    def _deliver(self, shard: str, records: list[dict[str, Any]]) -> None:
        chosen = [r for r in records if not self.mapping.filters or any(_matches(p, r) for p in self.mapping.filters)]
        failed_at = self._run(chosen) if chosen else None
        if failed_at is None:
            return
        key = (shard, failed_at)
        self._retries[key] = self._retries.get(key, 0) + 1
        limit = self.mapping.maximum_retry_attempts
        if limit < 0 or self._retries[key] <= limit:
            self._positions[shard] = ("AT_SEQUENCE_NUMBER", failed_at)  # read it again
            return
        del self._retries[key]
        self._on_failure(self._failure_record(shard, records, failed_at))

    def _run(self, records: list[dict[str, Any]]) -> str | None:
        """Invoke with one batch; the sequence number to read again from, or None when it went through."""
        try:
            answer = self._invoke({"Records": records})
        except Exception:
            if self.mapping.bisect_on_error and len(records) > 1:
                middle = len(records) // 2
                return self._run(records[:middle]) or self._run(records[middle:])
            return str(records[0]["dynamodb"]["SequenceNumber"])
        if self.mapping.report_item_failures and isinstance(answer, dict):
            failures = answer.get("batchItemFailures") or []
            if failures:
                return str(min((f["itemIdentifier"] for f in failures), key=int))
        return None

    def _failure_record(self, shard: str, records: list[dict[str, Any]], failed_at: str) -> dict[str, Any]:
        """What an OnFailure destination receives: where the batch is on the stream, not the records."""
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        return {
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": failed_at,
                "endSequenceNumber": sequences[-1],
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
