"""The only module that touches DynamoDB: four small stores behind one client; keys and cursors stay inside."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from . import aws_calls
from .errors import StorageUnavailable
from .records import ApiClient, ConnectionRecord, ConnectionStatus, PendingAuthorization, WebhookDelivery, WebhookRecord
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
    config = aws_calls.client_config(
        settings.storage_connect_timeout,
        settings.storage_read_timeout,
        # The keep-alive job's threads share this client: one pooled connection each (botocore's default is 10).
        max_pool_connections=max(10, settings.keepalive_concurrency),
    )
    return boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint or None, config=config)


class _Table:
    def __init__(self, client: Any, name: str, attempt_seconds: float = 0.0) -> None:
        self._client = client
        self.name = name
        self._attempt_seconds = attempt_seconds  # one attempt's worst case: connect and read timeouts

    def _call(self, operation: str, **request: Any) -> Any:
        """One DynamoDB operation within the invocation's deadline (aws_calls.call)."""
        return aws_calls.call(getattr(self._client, operation), self._attempt_seconds, **request)

    def _get(self, key: dict[str, Any], model: Callable[..., _M]) -> _M | None:
        with _storage_errors():
            answer = self._call("get_item", TableName=self.name, Key=_to_item(key), ConsistentRead=True)
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
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        if values:  # DynamoDB refuses an empty map (a plain REMOVE has no values)
            request["ExpressionAttributeValues"] = values
        if condition:
            request["ConditionExpression"] = condition
        if names:
            request["ExpressionAttributeNames"] = names
        return request

    def _call_update(self, request: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """One UpdateItem: (True, its answer), or (False, the refusal's response) when its condition failed."""
        try:
            with _storage_errors():
                return True, self._call("update_item", **request)
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

    def _applies(
        self,
        key: dict[str, Any],
        expression: str,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str] | None = None,
    ) -> bool:
        """One conditional UpdateItem: whether its condition held (and so the update was made)."""
        return self._update(key, expression, values, condition, names) is not None

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
            self._call(
                "put_item",
                TableName=self.name,
                Item=_to_item(client.model_dump()),
                ConditionExpression="attribute_not_exists(clientId)",
            )

    def is_active(self, client_id: str) -> bool:
        """Whether the client exists and is not revoked. Eventually consistent (half a read unit): a revocation
        reaches it within about a second, less than a code exchange takes, which this read comes before."""
        with _storage_errors():
            answer = self._call(
                "get_item",
                TableName=self.name,
                Key=_to_item({"clientId": client_id}),
                ProjectionExpression="clientId, revoked",  # never the key hash
            )
        item = answer.get("Item")
        return bool(item) and not (item.get("revoked") or {}).get("BOOL", False)

    def revoke(self, client_id: str) -> bool:
        return self._applies({"clientId": client_id}, "SET revoked = :t", _values(t=True), "attribute_exists(clientId)")

    # The client's webhook lives on its own item: one per client, gone with it, read with the same key.
    def get_webhook(self, client_id: str) -> WebhookRecord | None:
        with _storage_errors():
            answer = self._call(
                "get_item",
                TableName=self.name,
                Key=_to_item({"clientId": client_id}),
                ConsistentRead=True,
                ProjectionExpression="clientId, webhookUrl, webhookSecrets, webhookUpdatedAt",
            )
        item = _from_item(answer.get("Item") or {})
        if "webhookUrl" not in item:
            return None
        return WebhookRecord(
            clientId=client_id,
            url=item["webhookUrl"],
            sealedSecrets=item["webhookSecrets"],
            updatedAt=item["webhookUpdatedAt"],
        )

    def create_webhook(self, client_id: str, url: str, sealed_secrets: bytes, updated_at: str) -> bool:
        """False when the client already has one (or no longer exists)."""
        return self._change_webhook("create", client_id, url=url, secrets=sealed_secrets, at=updated_at)

    def set_webhook_url(self, client_id: str, url: str, updated_at: str) -> bool:
        return self._change_webhook("set_url", client_id, url=url, at=updated_at)

    def replace_webhook_secrets(self, client_id: str, expected: bytes, sealed_secrets: bytes, updated_at: str) -> bool:
        """Optimistic: False when the secrets changed since `expected` was read (or the webhook is gone)."""
        return self._change_webhook(
            "replace_secrets", client_id, secrets=sealed_secrets, at=updated_at, expected=expected
        )

    def delete_webhook(self, client_id: str) -> bool:
        """True when there was one to delete."""
        return self._change_webhook("delete", client_id)

    def _change_webhook(self, change: str, client_id: str, **values: Any) -> bool:
        update, condition = _WEBHOOK_CHANGES[change]
        return self._applies({"clientId": client_id}, update, _values(**values), condition)


# Each change of a client's webhook: its update and the condition under which it applies.
_WEBHOOK_CHANGES = {
    "create": (
        "SET webhookUrl = :url, webhookSecrets = :secrets, webhookUpdatedAt = :at",
        "attribute_exists(clientId) AND attribute_not_exists(webhookUrl)",
    ),
    "set_url": ("SET webhookUrl = :url, webhookUpdatedAt = :at", "attribute_exists(webhookUrl)"),
    "replace_secrets": ("SET webhookSecrets = :secrets, webhookUpdatedAt = :at", "webhookSecrets = :expected"),
    "delete": ("REMOVE webhookUrl, webhookSecrets, webhookUpdatedAt", "attribute_exists(webhookUrl)"),
}


@dataclass(frozen=True)
class Claim:
    """A claim's answer: whether this caller won the attempt, and the attempt (after the claim when it won,
    as it stood when it did not; None when there is no such attempt)."""

    claimed: bool
    pending: PendingAuthorization | None


class PendingAuthorizations(_Table):
    def put_new(self, pending: PendingAuthorization) -> None:
        with _storage_errors():
            self._call(
                "put_item",
                TableName=self.name,
                Item=_to_item(pending.model_dump(mode="json")),
                ConditionExpression="attribute_not_exists(stateHash)",
            )

    def get(self, state_hash: str) -> PendingAuthorization | None:
        return self._get({"stateHash": state_hash}, PendingAuthorization)

    def bind_browser(self, state_hash: str, binding_hash: str, now: int) -> bool:
        """The first browser to open the attempt owns it."""
        return self._applies(
            {"stateHash": state_hash},
            "SET browserBindingHash = :b",
            _values(b=binding_hash, now=now, pending="PENDING"),
            "attribute_not_exists(browserBindingHash) AND expiresAt > :now AND #s = :pending",
            names={"#s": "status"},
        )

    def claim(self, state_hash: str, now: int, binding_hash: str | None) -> Claim:
        """Single use: exactly one callback, from the browser the attempt is bound to (when it must be), moves the
        attempt from PENDING to CONSUMED.

        No read before it: the one UpdateItem answers the attempt whether the claim succeeded or not
        (unknown, expired, already used, or another browser's), so the caller can tell which."""
        condition = "#s = :pending AND expiresAt > :now AND "
        values = _values(consumed="CONSUMED", pending="PENDING", now=now, unbound=False)
        if binding_hash is None:
            condition += "requiresBrowserBinding = :unbound"
        else:
            condition += "(requiresBrowserBinding = :unbound OR browserBindingHash = :binding)"
            values.update(_values(binding=binding_hash))
        claimed, item = self._update_or_old(
            {"stateHash": state_hash}, "SET #s = :consumed", values, condition, names={"#s": "status"}
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


# The record's own values that Connections.UPSERT_CONNECTED writes as they are, under their own names.
_UPSERTED_AS_GIVEN = {
    "clientId",
    "providerId",
    "calendarType",
    "scheduleId",
    "externalAccountId",
    "scopesGranted",
    "createdAt",
    "updatedAt",
    "tokens",
}


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
        # Counts connects: on the table's stream a reconnect is a MODIFY that raises it, a token refresh is not.
        "connectCount = if_not_exists(connectCount, :zero) + :one, "
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
                **record.model_dump(include=_UPSERTED_AS_GIVEN),
                email=record.externalAccountEmail or "",
                expiresAt=record.accessTokenExpiresAt,
                status=ConnectionStatus.CONNECTED.value,
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
        self, client_id: str, schedule_id: str, limit: int, cursor: str | None
    ) -> tuple[list[ConnectionRecord], str | None]:
        """One page, oldest first, and the cursor to continue after it; None when nothing follows.

        A cursor is the page's last key, encoded: refused (InvalidCursor) unless it is one this listing handed out
        (the same schedule, the same client)."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": self.index,
            "KeyConditionExpression": "scheduleId = :schedule AND begins_with(listKey, :client)",
            "ExpressionAttributeValues": _values(schedule=schedule_id, client=f"{client_id}#"),
            # One more than a page: DynamoDB hands back a LastEvaluatedKey whenever a page is full, even the last.
            "Limit": limit + 1,
        }
        if cursor:
            request["ExclusiveStartKey"] = _list_start(cursor, client_id, schedule_id)
        with _storage_errors():
            answer = self._call("query", **request)
        items = answer.get("Items", [])
        if len(items) > limit:
            items = items[:limit]
            last = {name: items[-1][name] for name in _LIST_KEY}
        else:
            last = answer.get("LastEvaluatedKey")  # only when the 1 MB answer limit cut the page short
        return [_connection(_from_item(item)) for item in items], _encode_cursor(last)

    def acquire_refresh_lease(self, connection_id: str, version: int, now: int, until: int) -> bool:
        return self._applies(
            {"connectionId": connection_id},
            "SET refreshLeaseUntil = :until",
            _values(until=until, version=version, now=now),
            "version = :version AND (attribute_not_exists(refreshLeaseUntil) OR refreshLeaseUntil < :now)",
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
        return self._applies(
            {"connectionId": connection_id},
            "SET keepAliveShard = :shard, keepAliveDueAt = :due",
            _values(shard=keepalive_shard(connection_id), due=due_at, connected=ConnectionStatus.CONNECTED.value),
            "#s = :connected AND attribute_not_exists(keepAliveDueAt)",
            names={"#s": "status"},
        )


def _connection(values: dict[str, Any]) -> ConnectionRecord:
    values.pop("listKey", None)
    values.pop("keepAliveShard", None)
    values["externalAccountEmail"] = values.get("externalAccountEmail") or None
    return ConnectionRecord(**values)


def stream_image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    """An item image from a table's change stream (DynamoDB JSON), as plain values."""
    return _from_item(image) if image else None


def connection_from_image(values: dict[str, Any]) -> ConnectionRecord:
    return _connection(dict(values))


def pending_from_image(values: dict[str, Any]) -> PendingAuthorization:
    return PendingAuthorization.model_validate(values)


class WebhookDeliveries(_Table):
    """Events on their way to webhooks. Two sparse indexes: due retries (only PENDING items carry `dueShard`)
    and dead letters (only DEAD items carry `deadShard`); delivered items stay a while (`purgeAt`, the TTL) so
    a stream batch processed twice is recognised."""

    due_index = "DueRetries"
    dead_index = "DeadLetters"
    DUE_SHARDS = 8  # spreads the due index's writes over partitions
    DEAD_SHARD = "dead"

    def _due_shard(self, delivery_id: str) -> str:
        return f"due#{int(hashlib.sha256(delivery_id.encode()).hexdigest()[:8], 16) % self.DUE_SHARDS}"

    def put_new(self, delivery: WebhookDelivery) -> bool:
        """False when this event is already known (its stream record is processed a second time)."""
        item = _to_item(delivery.model_dump())
        item["dueShard"] = _serialize(self._due_shard(delivery.deliveryId))
        try:
            with _storage_errors():
                self._call(
                    "put_item", TableName=self.name, Item=item, ConditionExpression="attribute_not_exists(deliveryId)"
                )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def get(self, delivery_id: str) -> WebhookDelivery | None:
        return self._get({"deliveryId": delivery_id}, _delivery)

    def claim(self, delivery: WebhookDelivery, until: int) -> bool:
        """Take a due delivery for one attempt: its next attempt moves to `until`, so nobody else sends it meanwhile."""
        return self._applies(
            {"deliveryId": delivery.deliveryId},
            "SET nextAttemptAt = :until",
            _values(until=until, seen=delivery.nextAttemptAt, pending="PENDING"),
            "nextAttemptAt = :seen AND #s = :pending",
            names={"#s": "status"},
        )

    def mark_delivered(self, delivery_id: str, attempts: int, first_attempt_at: int, purge_at: int) -> None:
        self._update(
            {"deliveryId": delivery_id},
            "SET #s = :delivered, attempts = :attempts, firstAttemptAt = if_not_exists(firstAttemptAt, :first), "
            "purgeAt = :purge REMOVE dueShard, nextAttemptAt, lastError",
            _values(delivered="DELIVERED", attempts=attempts, first=first_attempt_at, purge=purge_at),
            names={"#s": "status"},
        )

    def mark_failed(
        self, delivery_id: str, attempts: int, first_attempt_at: int, next_attempt_at: int, error: str
    ) -> None:
        self._update(
            {"deliveryId": delivery_id},
            "SET attempts = :attempts, firstAttemptAt = if_not_exists(firstAttemptAt, :first), "
            "nextAttemptAt = :next, lastError = :error",
            _values(attempts=attempts, first=first_attempt_at, next=next_attempt_at, error=error),
        )

    def mark_dead(self, delivery_id: str, attempts: int, first_attempt_at: int, now: int, error: str) -> None:
        self._update(
            {"deliveryId": delivery_id},
            "SET #s = :dead, attempts = :attempts, firstAttemptAt = if_not_exists(firstAttemptAt, :first), "
            "lastError = :error, deadShard = :shard, deadAt = :now REMOVE dueShard, nextAttemptAt",
            _values(
                dead="DEAD", attempts=attempts, first=first_attempt_at, error=error, shard=self.DEAD_SHARD, now=now
            ),
            names={"#s": "status"},
        )

    def discard(self, delivery_id: str) -> None:
        with _storage_errors():
            self._call("delete_item", TableName=self.name, Key=_to_item({"deliveryId": delivery_id}))

    def due(self, now: int, limit: int) -> list[WebhookDelivery]:
        """Deliveries whose next attempt is due, oldest first per shard; never a scan."""
        found: list[WebhookDelivery] = []
        for shard in range(self.DUE_SHARDS):
            found += self._query_index(
                self.due_index,
                "dueShard = :shard AND nextAttemptAt <= :now",
                _values(shard=f"due#{shard}", now=now),
                limit - len(found),
            )
            if len(found) >= limit:
                break
        return found

    def dead_letters(self, limit: int) -> list[WebhookDelivery]:
        return self._query_index(self.dead_index, "deadShard = :shard", _values(shard=self.DEAD_SHARD), limit)

    def _query_index(self, index: str, condition: str, values: dict[str, Any], limit: int) -> list[WebhookDelivery]:
        found: list[WebhookDelivery] = []
        request: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        while len(found) < limit:
            request["Limit"] = limit - len(found)
            with _storage_errors():
                answer = self._call("query", **request)
            found += [_delivery(**_from_item(item)) for item in answer.get("Items", [])]  # both project ALL
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found

    def redrive(self, delivery_id: str, now: int) -> bool:
        """A dead letter becomes due again, with a fresh 24-hour window; False when it is no longer dead."""
        return self._applies(
            {"deliveryId": delivery_id},
            "SET #s = :pending, attempts = :zero, nextAttemptAt = :now, dueShard = :shard "
            "REMOVE deadShard, deadAt, firstAttemptAt",
            _values(pending="PENDING", zero=0, now=now, shard=self._due_shard(delivery_id), dead="DEAD"),
            "#s = :dead",
            names={"#s": "status"},
        )


def _delivery(**values: Any) -> WebhookDelivery:
    return WebhookDelivery.model_validate(values)


_LIST_KEY = ("connectionId", "scheduleId", "listKey")  # the ByScheduleId index's key, with the table's


class InvalidCursor(ValueError):
    """A list cursor this listing did not hand out; its message says which way (for the caller's error)."""


def _encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _list_start(cursor: str, client_id: str, schedule_id: str) -> dict[str, Any]:
    """The key a cursor names, when it is one the listing of this client's schedule handed out."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        key = None  # not base64, or not JSON
    if not (
        isinstance(key, dict)
        and set(key) == set(_LIST_KEY)
        and all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
    ):
        raise InvalidCursor("not a cursor this API returned")
    if key["scheduleId"]["S"] != schedule_id or not key["listKey"]["S"].startswith(f"{client_id}#"):
        raise InvalidCursor("belongs to another listing")
    return key


class Storage:
    """The stores of one deployment, sharing one DynamoDB client."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.client = client or create_client(settings)
        attempt = settings.storage_connect_timeout + settings.storage_read_timeout
        self.api_clients = ApiClients(self.client, settings.api_clients_table, attempt)
        self.pending = PendingAuthorizations(self.client, settings.pending_table, attempt)
        self.connections = Connections(self.client, settings.connections_table, attempt)
        self.webhook_deliveries = WebhookDeliveries(self.client, settings.webhook_deliveries_table, attempt)
