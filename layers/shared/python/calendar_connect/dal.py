"""The only module that touches DynamoDB: three small stores behind one low-level client."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageUnavailable
from .models import ApiClient, ConnectionRecord, ConnectionStatus, PendingAuthorization
from .settings import Settings

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_CONDITION_FAILED = "ConditionalCheckFailedException"
_M = TypeVar("_M")


def _serialize(value: Any) -> dict[str, Any]:
    """TypeSerializer's answer, without its type probing for the plain values most attributes hold."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int and -(10**38) < value < 10**38:  # DynamoDB numbers: 38 digits
        return {"N": str(value)}
    return _serializer.serialize(value)


def _deserialize(attribute: dict[str, Any]) -> Any:
    """TypeDeserializer's answer (numbers as Decimal), top-level binary as bytes; strings and booleans directly."""
    if "S" in attribute:
        return attribute["S"]
    if "BOOL" in attribute:
        return attribute["BOOL"]
    value = _deserializer.deserialize(attribute)
    return value.value if isinstance(value, Binary) else value


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserialize(v) for k, v in item.items()}


def _values(**values: Any) -> dict[str, Any]:
    return {f":{k}": _serialize(v) for k, v in values.items()}


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Any failure to reach DynamoDB becomes StorageUnavailable; condition failures pass through."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code in (_CONDITION_FAILED, "ValidationException"):
            raise  # a refused condition, or a request we built wrong: not an outage
        raise StorageUnavailable(code) from error
    except BotoCoreError as error:
        raise StorageUnavailable(type(error).__name__) from error


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == _CONDITION_FAILED


def create_client(settings: Settings) -> Any:
    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        tcp_keepalive=True,
        # The keep-alive job's threads share this client: one pooled connection each (botocore's default is 10).
        max_pool_connections=max(10, settings.keepalive_concurrency),
    )
    return boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint or None, config=config)


class _Table:
    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    def _get(self, key: dict[str, Any], model: Callable[..., _M]) -> _M | None:
        with _storage_errors():
            answer = self._client.get_item(TableName=self.name, Key=_to_item(key), ConsistentRead=True)
        item = answer.get("Item")
        return model(**_from_item(item)) if item else None

    def _update_request(
        self,
        key: dict[str, Any],
        expression: str,
        values: dict[str, Any],
        condition: str | None,
        names: dict[str, str] | None,
        return_new: bool,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": _to_item(key),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        if condition:
            request["ConditionExpression"] = condition
        if names:
            request["ExpressionAttributeNames"] = names
        return request

    def _call_update(self, request: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """One UpdateItem: (True, its answer), or (False, the refusal's response) when its condition failed."""
        try:
            with _storage_errors():
                return True, self._client.update_item(**request)
        except ClientError as error:
            if _condition_failed(error):
                return False, error.response
            raise

    def _update(
        self,
        key: dict[str, Any],
        expression: str,
        values: dict[str, Any],
        condition: str | None = None,
        names: dict[str, str] | None = None,
        return_new: bool = False,
    ) -> dict[str, Any] | None:
        """One conditional UpdateItem; False-y answer (None) when the condition failed."""
        applied, answer = self._call_update(self._update_request(key, expression, values, condition, names, return_new))
        if not applied:
            return None
        return _from_item(answer["Attributes"]) if return_new else {}

    def _update_or_old(
        self, key: dict[str, Any], expression: str, values: dict[str, Any], condition: str, names: dict[str, str]
    ) -> tuple[bool, dict[str, Any] | None]:
        """One conditional UpdateItem that needs no read before it: (True, the item after the update) when the
        condition held, else (False, the item as it stood, None when there is none)."""
        request = self._update_request(key, expression, values, condition, names, return_new=True)
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        applied, answer = self._call_update(request)
        item = answer.get("Attributes") if applied else answer.get("Item")
        return applied, _from_item(item) if item else None


class ApiClients(_Table):
    def get(self, client_id: str) -> ApiClient | None:
        return self._get({"clientId": client_id}, ApiClient)

    def put(self, client: ApiClient) -> None:
        with _storage_errors():
            self._client.put_item(
                TableName=self.name,
                Item=_to_item(client.model_dump()),
                ConditionExpression="attribute_not_exists(clientId)",
            )

    def revoke(self, client_id: str) -> bool:
        return (
            self._update({"clientId": client_id}, "SET revoked = :t", _values(t=True), "attribute_exists(clientId)")
            is not None
        )


@dataclass(frozen=True)
class Claim:
    """A claim's answer: whether this caller won the attempt, and the attempt (after the claim when it won,
    as it stood when it did not; None when there is no such attempt)."""

    claimed: bool
    pending: PendingAuthorization | None


class PendingAuthorizations(_Table):
    def put_new(self, pending: PendingAuthorization) -> None:
        with _storage_errors():
            self._client.put_item(
                TableName=self.name,
                Item=_to_item(pending.model_dump(mode="json")),
                ConditionExpression="attribute_not_exists(stateHash)",
            )

    def get(self, state_hash: str) -> PendingAuthorization | None:
        return self._get({"stateHash": state_hash}, PendingAuthorization)

    def bind_browser(self, state_hash: str, binding_hash: str, now: int) -> bool:
        """The first browser to open the attempt owns it."""
        return (
            self._update(
                {"stateHash": state_hash},
                "SET browserBindingHash = :b",
                _values(b=binding_hash, now=now, pending="PENDING"),
                "attribute_not_exists(browserBindingHash) AND expiresAt > :now AND #s = :pending",
                names={"#s": "status"},
            )
            is not None
        )

    def claim(self, state_hash: str, now: int) -> Claim:
        """Single use: exactly one callback moves the attempt from PENDING to CONSUMED.

        No read before it: the one UpdateItem answers the attempt whether the claim succeeded or not
        (unknown, expired, or already used), so the caller can tell which."""
        claimed, item = self._update_or_old(
            {"stateHash": state_hash},
            "SET #s = :consumed",
            _values(consumed="CONSUMED", pending="PENDING", now=now),
            "#s = :pending AND expiresAt > :now",
            names={"#s": "status"},
        )
        return Claim(claimed, PendingAuthorization(**item) if item is not None else None)

    def record_outcome(self, state_hash: str, outcome: dict[str, str]) -> None:
        self._update(
            {"stateHash": state_hash},
            "SET #s = :done, outcome = :outcome",
            _values(done="DONE", outcome=outcome),
            names={"#s": "status"},
        )


KEEPALIVE_SHARDS = 16  # index partitions of the keep-alive schedule: spread its writes, queried in turn


def keepalive_shard(connection_id: str) -> str:
    """A connection's fixed partition of the keep-alive index."""
    return f"ka#{zlib.crc32(connection_id.encode()) % KEEPALIVE_SHARDS}"


class Connections(_Table):
    index = "ByScheduleId"
    # Sparse: only CONNECTED connections carry keepAliveShard/keepAliveDueAt, so only they are in it.
    keepalive_index = "KeepAliveDue"
    UPSERT_CONNECTED = (
        "SET clientId = :clientId, providerId = :providerId, calendarType = :calendarType, "
        "scheduleId = :scheduleId, externalAccountId = :externalAccountId, "
        "externalAccountEmail = :email, scopesGranted = :scopesGranted, #s = :status, "
        "createdAt = if_not_exists(createdAt, :createdAt), updatedAt = :updatedAt, "
        "tokens = :tokens, accessTokenExpiresAt = :expiresAt, "
        "listKey = if_not_exists(listKey, :listKey), version = if_not_exists(version, :zero) + :one, "
        "keepAliveShard = :keepAliveShard, keepAliveDueAt = :keepAliveDueAt "
        "REMOVE refreshLeaseUntil, revokedAtProvider"
    )

    def get(self, connection_id: str) -> ConnectionRecord | None:
        return self._get({"connectionId": connection_id}, ConnectionRecord)

    def upsert_connected(self, record: ConnectionRecord) -> ConnectionRecord:
        """Create the connection, or reconnect it in place (same id, createdAt kept, version bumped)."""
        new = self._update(
            {"connectionId": record.connectionId},
            self.UPSERT_CONNECTED,
            _values(
                clientId=record.clientId,
                providerId=record.providerId,
                calendarType=record.calendarType,
                scheduleId=record.scheduleId,
                externalAccountId=record.externalAccountId,
                email=record.externalAccountEmail or "",
                scopesGranted=record.scopesGranted,
                status=ConnectionStatus.CONNECTED.value,
                createdAt=record.createdAt,
                updatedAt=record.updatedAt,
                tokens=record.tokens,
                expiresAt=record.accessTokenExpiresAt,
                # Listed oldest first within a client's schedule; createdAt survives reconnects.
                listKey=f"{record.clientId}#{record.createdAt}#{record.connectionId}",
                one=1,
                zero=0,
                keepAliveShard=keepalive_shard(record.connectionId),
                # Without a schedule from the caller: due at once, so the next keep-alive run sets one.
                keepAliveDueAt=record.keepAliveDueAt or 0,
            ),
            names={"#s": "status"},
            return_new=True,
        )
        assert new is not None  # unconditional update
        return _connection(new)

    def list_for_schedule(
        self, client_id: str, schedule_id: str, limit: int, cursor: dict[str, Any] | None
    ) -> tuple[list[ConnectionRecord], dict[str, Any] | None]:
        """One page, oldest first, and the key to continue after it; None when nothing follows."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": self.index,
            "KeyConditionExpression": "scheduleId = :schedule AND begins_with(listKey, :client)",
            "ExpressionAttributeValues": _values(schedule=schedule_id, client=f"{client_id}#"),
            # One more than a page: DynamoDB hands back a LastEvaluatedKey whenever a page is full, even the last.
            "Limit": limit + 1,
        }
        if cursor:
            request["ExclusiveStartKey"] = cursor
        with _storage_errors():
            answer = self._client.query(**request)
        items = answer.get("Items", [])
        if len(items) > limit:
            items = items[:limit]
            last = {name: items[-1][name] for name in ("connectionId", "scheduleId", "listKey")}
        else:
            last = answer.get("LastEvaluatedKey")  # only when the 1 MB answer limit cut the page short
        return [_connection(_from_item(item)) for item in items], last

    def acquire_refresh_lease(self, connection_id: str, version: int, now: int, until: int) -> bool:
        return (
            self._update(
                {"connectionId": connection_id},
                "SET refreshLeaseUntil = :until",
                _values(until=until, version=version, now=now),
                "version = :version AND (attribute_not_exists(refreshLeaseUntil) OR refreshLeaseUntil < :now)",
            )
            is not None
        )

    def store_refreshed_tokens(
        self,
        connection_id: str,
        version: int,
        tokens: bytes,
        expires_at: int,
        updated_at: str,
        keepalive_due_at: int,
    ) -> ConnectionRecord | None:
        """Version-conditioned: a rotated refresh token is written once, by the lease holder. The refresh token
        was just used, so the keep-alive schedule moves on (and a connection written before the schedule
        existed joins it here)."""
        new = self._update(
            {"connectionId": connection_id},
            "SET tokens = :tokens, accessTokenExpiresAt = :expiresAt, updatedAt = :updatedAt, "
            "version = version + :one, keepAliveShard = :shard, keepAliveDueAt = :due REMOVE refreshLeaseUntil",
            _values(
                tokens=tokens,
                expiresAt=expires_at,
                updatedAt=updated_at,
                version=version,
                one=1,
                shard=keepalive_shard(connection_id),
                due=keepalive_due_at,
            ),
            "version = :version",
            return_new=True,
        )
        return _connection(new) if new is not None else None

    def release_refresh_lease(self, connection_id: str, version: int) -> None:
        self._update(
            {"connectionId": connection_id}, "REMOVE refreshLeaseUntil", _values(version=version), "version = :version"
        )

    def mark_reauth_required(self, connection_id: str, version: int, updated_at: str) -> ConnectionRecord | None:
        """The provider no longer honours the refresh token: keep the connection, drop the useless tokens."""
        return self._transition(connection_id, version, ConnectionStatus.REAUTH_REQUIRED, updated_at)

    def mark_disconnected(
        self, connection_id: str, version: int, updated_at: str, revoked_at_provider: bool | None
    ) -> ConnectionRecord | None:
        return self._transition(
            connection_id, version, ConnectionStatus.DISCONNECTED, updated_at, revokedAtProvider=revoked_at_provider
        )

    def _transition(
        self, connection_id: str, version: int, status: ConnectionStatus, updated_at: str, **extra: Any
    ) -> ConnectionRecord | None:
        """Version-conditioned status change that erases the stored tokens and leaves the keep-alive index."""
        sets = ", ".join(f"{name} = :{name}" for name in extra)
        new = self._update(
            {"connectionId": connection_id},
            "SET #s = :status, updatedAt = :updatedAt, version = version + :one"
            + (f", {sets}" if sets else "")
            + " REMOVE refreshLeaseUntil, tokens, accessTokenExpiresAt, keepAliveShard, keepAliveDueAt",
            _values(status=status.value, updatedAt=updated_at, version=version, one=1, **extra),
            "version = :version",
            names={"#s": "status"},
            return_new=True,
        )
        return _connection(new) if new is not None else None

    def due_for_keepalive(self, now: int, page_size: int, shards: Iterable[int] | None = None) -> Iterator[list[str]]:
        """Ids of the connections whose keep-alive is due by `now`, most overdue first within each shard, a page of
        one shard at a time in turn: a run stopped early has taken the most overdue of every shard.

        Queries the sparse index, never the table: only due CONNECTED connections are read. Lazy: pages are
        fetched as the caller asks for them."""
        chosen = range(KEEPALIVE_SHARDS) if shards is None else shards
        starts: dict[str, dict[str, Any] | None] = {f"ka#{n}": None for n in chosen}
        while starts:
            for shard, start in list(starts.items()):
                request: dict[str, Any] = {
                    "TableName": self.name,
                    "IndexName": self.keepalive_index,
                    "KeyConditionExpression": "keepAliveShard = :shard AND keepAliveDueAt <= :now",
                    "ExpressionAttributeValues": _values(shard=shard, now=now),
                    "Limit": page_size,
                }
                if start:
                    request["ExclusiveStartKey"] = start
                with _storage_errors():
                    answer = self._client.query(**request)
                if answer.get("LastEvaluatedKey"):
                    starts[shard] = answer["LastEvaluatedKey"]
                else:
                    del starts[shard]
                ids = [item["connectionId"]["S"] for item in answer.get("Items", [])]
                if ids:
                    yield ids

    def connected_without_keepalive(self) -> Iterator[str]:
        """Ids of CONNECTED connections written before the keep-alive schedule existed (a one-off Scan: the
        backfill command's, never the keep-alive job's)."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "FilterExpression": "#s = :connected AND attribute_not_exists(keepAliveDueAt)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": _values(connected=ConnectionStatus.CONNECTED.value),
            "ProjectionExpression": "connectionId",
        }
        while True:
            with _storage_errors():
                answer = self._client.scan(**request)
            yield from (item["connectionId"]["S"] for item in answer.get("Items", []))
            if not answer.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def schedule_keepalive(self, connection_id: str, due_at: int) -> bool:
        """Put a CONNECTED connection without a schedule into the keep-alive index; False when it is no longer
        CONNECTED or has one by now."""
        return (
            self._update(
                {"connectionId": connection_id},
                "SET keepAliveShard = :shard, keepAliveDueAt = :due",
                _values(shard=keepalive_shard(connection_id), due=due_at, connected=ConnectionStatus.CONNECTED.value),
                "#s = :connected AND attribute_not_exists(keepAliveDueAt)",
                names={"#s": "status"},
            )
            is not None
        )


def _connection(values: dict[str, Any]) -> ConnectionRecord:
    values.pop("listKey", None)
    values.pop("keepAliveShard", None)
    values["externalAccountEmail"] = values.get("externalAccountEmail") or None
    return ConnectionRecord(**values)


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Raises ValueError on anything that is not a cursor this API produced."""
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if not isinstance(raw, dict) or set(raw) != {"connectionId", "scheduleId", "listKey"}:
        raise ValueError("not a cursor")
    if not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in raw.values()):
        raise ValueError("not a cursor")
    return raw


class Storage:
    """The three stores of one deployment, sharing one DynamoDB client."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.client = client or create_client(settings)
        self.api_clients = ApiClients(self.client, settings.api_clients_table)
        self.pending = PendingAuthorizations(self.client, settings.pending_table)
        self.connections = Connections(self.client, settings.connections_table)
