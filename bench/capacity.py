"""DynamoDB capacity of one full connect flow (initiate + callback), read from ReturnConsumedCapacity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.flow import connect
from bench.stack import Stack

_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
_INDEX_OVERHEAD = 100  # bytes DynamoDB adds to each item it writes into a secondary index


@dataclass
class Call:
    operation: str
    table: str
    read: float
    write: float
    index_write: float


@dataclass
class Capacity:
    calls: list[Call] = field(default_factory=list)
    minimum_read: float = 0.0
    minimum_write: float = 0.0
    minimum_why: list[str] = field(default_factory=list)

    @property
    def read(self) -> float:
        return sum(c.read for c in self.calls)

    @property
    def write(self) -> float:
        return sum(c.write + c.index_write for c in self.calls)


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.strip("-").lstrip("0").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(v) for k, v in inner.items())
    return 0


def item_size(item: dict[str, Any], attributes: list[str] | None = None) -> int:
    """Bytes DynamoDB bills for an item (names plus values), optionally only some attributes."""
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items() if attributes is None or k in attributes)


def _recording(client: Any, calls: list[Call]) -> None:
    def ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "INDEXES"

    def record(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        # DynamoDB Local answers CapacityUnits only, without the read/write split: the operation tells which.
        used = parsed.get("ConsumedCapacity") or {}
        indexes = sum(float(i.get("CapacityUnits", 0.0)) for i in (used.get("GlobalSecondaryIndexes") or {}).values())
        total = float(used.get("CapacityUnits", 0.0))
        table = float((used.get("Table") or {}).get("CapacityUnits", total - indexes))
        reads = model.name in _READS
        calls.append(
            Call(model.name, used.get("TableName", "?"), table if reads else 0.0, 0.0 if reads else table, indexes)
        )

    client.meta.events.register("provide-client-params.dynamodb", ask, unique_id="bench-capacity-ask")
    client.meta.events.register("after-call.dynamodb", record, unique_id="bench-capacity-record")


def _unrecord(client: Any) -> None:
    client.meta.events.unregister("provide-client-params.dynamodb", unique_id="bench-capacity-ask")
    client.meta.events.unregister("after-call.dynamodb", unique_id="bench-capacity-record")


def measure_capacity(stack: Stack) -> Capacity:
    from calendar_connect import deployment

    client = deployment.current().storage.client
    capacity = Capacity()
    _recording(client, capacity.calls)
    try:
        # A new external account: the flow creates its connection, as a first connect does.
        connection_id = connect(stack, account="bench-capacity-account")
    finally:
        _unrecord(client)
    _minimum(stack, capacity, connection_id)
    return capacity


def _minimum(stack: Stack, capacity: Capacity, connection_id: str) -> None:
    """What the contract forces: read the API key, write the attempt, use it once, check its client is still
    active, record its outcome, store the connection (and its listing index entry). One write unit per started KiB
    of each item written."""
    db = stack.dynamodb.client()
    connection = db.get_item(TableName="ConnectionsTable", Key={"connectionId": {"S": connection_id}})["Item"]
    pending = max(
        db.scan(TableName="PendingAuthorizationsTable")["Items"],
        key=lambda item: int(item["createdAt"]["N"]),
    )
    from local.template import load_template

    index = load_template()["Resources"]["ConnectionsTable"]["Properties"]["GlobalSecondaryIndexes"][0]
    projected = ["connectionId", "scheduleId", "listKey", *index["Projection"]["NonKeyAttributes"]]
    pending_kib = math.ceil(item_size(pending) / 1024)
    connection_kib = math.ceil(item_size(connection) / 1024)
    index_kib = math.ceil((item_size(connection, projected) + _INDEX_OVERHEAD) / 1024)
    keepalive_keys = ["connectionId", "keepAliveShard", "keepAliveDueAt"]
    keepalive_kib = math.ceil((item_size(connection, keepalive_keys) + _INDEX_OVERHEAD) / 1024)
    capacity.minimum_read = 1.5  # the claim's read and the revoked-client check (0.5)
    capacity.minimum_write = 3 * pending_kib + connection_kib + index_kib + keepalive_kib
    capacity.minimum_why = [
        "1 RCU: the API key's client, strongly consistent (a revoked key stops at once)",
        f"{pending_kib} WCU: put the pending authorization ({item_size(pending)} B)",
        f"{pending_kib} WCU: claim it once (conditional update, before the code is redeemed)",
        "0.5 RCU: its API client not revoked meanwhile (eventually consistent, before the code is redeemed)",
        f"{pending_kib} WCU: record its outcome (a repeated callback replays it)",
        f"{connection_kib} WCU: the connection ({item_size(connection)} B)",
        f"{index_kib} WCU: its ByScheduleId index entry",
        f"{keepalive_kib} WCU: its KeepAliveDue index entry (the contract's keep-alive finds it there, not by a Scan)",
    ]
