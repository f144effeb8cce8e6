"""Webhook events from the tables' own change streams: which change of which item is which event.

A record makes at most one event. Its webhook-id comes from the record's eventID, so a record processed
twice (the stream retries batches) is the same event, and a receiver can recognise it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from .api_models import AuthorizationFailedData, Connection, WebhookEvent, WebhookEventType
from .dal import connection_from_image, pending_from_image, stream_image
from .observability import attempt_id
from .records import ConnectionStatus
from .settings import Settings
from .timestamps import iso

# How DynamoDB's TTL signs its deletions on the stream: a REMOVE by the service itself.
TTL_DELETION = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


@dataclass(frozen=True)
class OutgoingEvent:
    webhook_id: str
    client_id: str
    event: WebhookEvent

    def body(self) -> str:
        return self.event.model_dump_json()


def table_of(record: dict[str, Any]) -> str:
    """arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label> -> <name>."""
    return str(record.get("eventSourceARN", "")).split(":table/", 1)[-1].split("/stream/", 1)[0]


def webhook_id(record: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{table_of(record)}\x1f{record['eventID']}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def event_from_record(settings: Settings, record: dict[str, Any]) -> OutgoingEvent | None:
    """The event a stream record makes, or None when the change is none a client is told about."""
    change = record.get("dynamodb") or {}
    old, new = stream_image(change.get("OldImage")), stream_image(change.get("NewImage"))
    stamp = iso(float(change.get("ApproximateCreationDateTime") or time.time()))
    table = table_of(record)
    if table == settings.connections_table:
        found = _connection_event(record.get("eventName", ""), old, new)
    elif table == settings.pending_table:
        found = _attempt_event(record, old, new)
    else:
        return None
    if found is None:
        return None
    client_id, kind, data = found
    return OutgoingEvent(webhook_id(record), client_id, WebhookEvent(type=kind, timestamp=stamp, data=data))


def _connection_event(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[str, Any, Any] | None:
    if name == "REMOVE" and old is not None and old.get("status") != ConnectionStatus.DISCONNECTED:
        record = connection_from_image(old)  # deleted outright: as good as disconnected
        return record.clientId, WebhookEventType.CONNECTION_DISCONNECTED, Connection.from_record(record)
    if new is None:
        return None
    record = connection_from_image(new)
    if name == "INSERT":
        return record.clientId, WebhookEventType.CONNECTION_CREATED, Connection.from_record(record)
    old = old or {}
    if record.status is ConnectionStatus.CONNECTED:
        # A reconnect raises connectCount; a token refresh or a lease changes the item without raising it.
        if int(new.get("connectCount", 0)) > int(old.get("connectCount", 0)) or old.get("status") != record.status:
            return record.clientId, WebhookEventType.CONNECTION_UPDATED, Connection.from_record(record)
        return None
    if old.get("status") == record.status:
        return None
    kind = (
        WebhookEventType.CONNECTION_REAUTH_REQUIRED
        if record.status is ConnectionStatus.REAUTH_REQUIRED
        else WebhookEventType.CONNECTION_DISCONNECTED
    )
    return record.clientId, kind, Connection.from_record(record)


def _attempt_event(
    record: dict[str, Any], old: dict[str, Any] | None, new: dict[str, Any] | None
) -> tuple[str, Any, Any] | None:
    name = record.get("eventName")
    if name == "MODIFY" and new is not None and new.get("status") == "DONE" and (old or {}).get("status") != "DONE":
        pending = pending_from_image(new)
        outcome = pending.outcome or {}
        if "error" not in outcome:
            return None  # connected: the Connections stream tells it (connection.created or .updated)
        error, reason = outcome["error"], outcome.get("reason", "")
    elif name == "REMOVE" and record.get("userIdentity") == TTL_DELETION and old and old.get("status") == "PENDING":
        pending = pending_from_image(old)  # expired without a callback: no outcome was ever recorded
        error, reason = "internal", "expired"
    else:
        return None
    data = AuthorizationFailedData(
        attemptId=attempt_id(pending.stateHash),
        providerId=pending.providerId,
        scheduleId=pending.scheduleId,
        error=error,
        reason=reason,
    )
    return pending.clientId, WebhookEventType.AUTHORIZATION_FAILED, data
