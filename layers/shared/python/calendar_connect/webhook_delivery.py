"""Webhook delivery: sign (Standard Webhooks), send, and keep what is not delivered yet.

Every event is written to WebhookDeliveries before its first attempt, so nothing is lost when the receiver is
down or the function stops: a 2xx delivers it; anything else (or no answer within 10 s) is tried again with
exponential backoff (30 s, 1, 2, 4 ... minutes, at most an hour apart) until 24 hours have passed since the
first attempt; then it is kept as a dead letter until redriven.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from .deployment import Deployment
from .errors import StorageUnavailable
from .observability import logger
from .records import WebhookDelivery, WebhookRecord
from .token_cipher import DecryptionError
from .webhook_events import event_from_record
from .webhook_urls import WebhookUrlError, resolve_webhook_url
from .webhooks import SECRET_PREFIX, signing_secrets

TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
RETRY_WINDOW_SECONDS = 24 * 3600
DELIVERED_KEPT_SECONDS = 3 * 24 * 3600  # a stream record is kept 24 h; this outlasts any reprocessing of it
CLAIM_SECONDS = 60  # one attempt holds a delivery this long (well over the 10 s timeout)
PARALLEL_SENDS = 8
_USER_AGENT = "CalendarConnect-Webhooks/1"


def backoff_seconds(attempts: int) -> int:
    """After the n-th failed attempt: 30 s, 1 min, 2 min, 4 min ... at most an hour."""
    return int(min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS))


def signature(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(webhook_id: str, body: str, secrets: list[str], timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per secret in force (two during a rotation)."""
    return {
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, webhook_id, timestamp, body) for s in secrets),
    }


_http: httpx.Client | None = None


def _client() -> httpx.Client:
    global _http
    if _http is None:
        # No keep-alive: each request goes to the address just checked, never over a connection opened for another
        # host; no proxies from the environment (they would connect elsewhere); redirects are failures, not followed.
        _http = httpx.Client(
            timeout=httpx.Timeout(TIMEOUT_SECONDS),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    return _http


def send(deployment: Deployment, webhook: WebhookRecord, delivery: WebhookDelivery, now: int) -> str | None:
    """One attempt: None when the receiver answered 2xx, else why not (never its body or the URL: either may hold
    secrets)."""
    try:
        target = resolve_webhook_url(webhook.url, deployment.settings.allow_private_webhooks)
    except WebhookUrlError as error:
        return f"refused: {error}"
    headers = signed_headers(
        delivery.deliveryId, delivery.body, signing_secrets(deployment, webhook, now), int(time.time())
    )
    headers["host"] = target.host_header()
    status, failure = 0, "no address"
    for address in target.addresses:  # in resolver order; the next one only when this one refuses to connect
        try:
            with _client().stream(
                "POST",
                target.request_url(address),
                content=delivery.body.encode(),
                headers=headers,
                extensions=target.extensions(),
            ) as answer:
                status = answer.status_code
            break
        except httpx.ConnectError as error:
            failure = f"no answer ({type(error).__name__})"
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as error:
            return f"no answer ({type(error).__name__})"
    else:
        return failure
    return None if 200 <= status < 300 else f"HTTP {status}"


class Fate(StrEnum):
    DELIVERED = "delivered"
    RETRIED = "retried"  # due again later
    DEAD_LETTERED = "dead_lettered"  # 24 hours of attempts: kept until redriven
    DROPPED = "dropped"  # the webhook was removed


@dataclass(frozen=True)
class Attempted:
    fate: Fate
    latency_ms: float | None = None  # the HTTP attempt's, when delivered


@dataclass
class Tally:
    """Attempts' outcomes, added up in the calling thread from the pool's results."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, attempts: Iterable[Attempted]) -> Tally:
        tally = cls()
        for done in attempts:
            if done.fate is Fate.DELIVERED:
                tally.delivered += 1
                if done.latency_ms is not None:
                    tally.latencies_ms.append(done.latency_ms)
            elif done.fate is Fate.RETRIED:
                tally.retried += 1
            elif done.fate is Fate.DEAD_LETTERED:
                tally.dead_lettered += 1
        return tally


def attempt(deployment: Deployment, delivery: WebhookDelivery, now: int) -> Attempted:
    """Send once and record the outcome: delivered, due again later, or dead after 24 hours."""
    store = deployment.storage.webhook_deliveries
    webhook = deployment.storage.api_clients.get_webhook(delivery.clientId)
    if webhook is None:
        store.discard(delivery.deliveryId)  # the client removed its webhook: nobody is waiting for the event
        logger.info("webhook removed; event dropped", extra=_about(delivery))
        return Attempted(Fate.DROPPED)
    started = time.perf_counter()
    try:
        failure = send(deployment, webhook, delivery, now)
    except DecryptionError:
        failure = "the webhook's secrets cannot be read"
    latency_ms = (time.perf_counter() - started) * 1000
    attempts = delivery.attempts + 1
    first = delivery.firstAttemptAt or now
    if failure is None:
        store.mark_delivered(delivery.deliveryId, attempts, first, now + DELIVERED_KEPT_SECONDS)
        logger.info("webhook delivered", extra={**_about(delivery), "attempt": attempts})
        return Attempted(Fate.DELIVERED, latency_ms)
    if now - first >= RETRY_WINDOW_SECONDS:
        store.mark_dead(delivery.deliveryId, attempts, first, now, failure)
        logger.warning("webhook dead-lettered", extra={**_about(delivery), "attempt": attempts, "failure": failure})
        return Attempted(Fate.DEAD_LETTERED)
    store.mark_failed(delivery.deliveryId, attempts, first, now + backoff_seconds(attempts), failure)
    logger.info("webhook not delivered yet", extra={**_about(delivery), "attempt": attempts, "failure": failure})
    return Attempted(Fate.RETRIED)


def _about(delivery: WebhookDelivery) -> dict[str, Any]:
    """What a delivery's log lines carry: its ids, and the attempt's or connection's id so that the "Follow one
    attempt" query finds them beside the flow's own lines (never the body: it is the client's data)."""
    data = json.loads(delivery.body).get("data") or {}
    follow = {key: data[key] for key in ("attemptId", "connectionId") if isinstance(data.get(key), str)}
    return {"webhookId": delivery.deliveryId, "eventType": delivery.eventType, "clientId": delivery.clientId, **follow}


def _in_parallel(work: Callable[[WebhookDelivery], Any], deliveries: Iterable[WebhookDelivery]) -> list[Any]:
    items = list(deliveries)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL_SENDS, len(items))) as pool:
        return list(pool.map(work, items))


@dataclass(frozen=True)
class StreamBatchResult:
    failed_sequence_number: str | None  # the first record not taken in; the stream gives it (and the rest) again
    queued: int
    tally: Tally  # the first attempts made

    @property
    def delivered(self) -> int:
        return self.tally.delivered


def handle_stream_records(
    deployment: Deployment,
    records: list[dict[str, Any]],
    now: int | None = None,
    has_time: Callable[[], bool] = lambda: True,
) -> StreamBatchResult:
    """Take in a batch from a table's stream: each event written down first, then a first attempt for each."""
    now = int(time.time()) if now is None else now
    store = deployment.storage.webhook_deliveries
    registered: dict[str, bool] = {}
    queued: list[WebhookDelivery] = []
    for record in records:
        try:
            outgoing = event_from_record(deployment.settings, record)
            if outgoing is None:
                continue
            client_id = outgoing.client_id
            if client_id not in registered:
                registered[client_id] = deployment.storage.api_clients.get_webhook(client_id) is not None
            if not registered[client_id]:
                continue  # no webhook registered: no one to tell
            delivery = WebhookDelivery(
                deliveryId=outgoing.webhook_id,
                clientId=outgoing.client_id,
                eventType=outgoing.event.type.value,
                body=outgoing.body(),
                createdAt=now,
                nextAttemptAt=now + CLAIM_SECONDS,  # held for the first attempt below; due after, should it not happen
            )
            if store.put_new(delivery):
                queued.append(delivery)
        except StorageUnavailable:
            logger.warning("stream batch not taken in; the stream retries it", extra={"eventID": record.get("eventID")})
            sequence = (record.get("dynamodb") or {}).get("SequenceNumber")
            return StreamBatchResult(str(sequence), len(queued), _first_attempts(deployment, queued, now, has_time))
    return StreamBatchResult(None, len(queued), _first_attempts(deployment, queued, now, has_time))


def _first_attempts(
    deployment: Deployment, queued: list[WebhookDelivery], now: int, has_time: Callable[[], bool]
) -> Tally:
    def first(delivery: WebhookDelivery) -> Attempted | None:
        if not has_time():
            return None  # left for the retry function, due at nextAttemptAt
        try:
            return attempt(deployment, delivery, now)
        except StorageUnavailable:
            return None  # still in the table (its outcome unrecorded): the retry function sends it

    return Tally.of(done for done in _in_parallel(first, queued) if done is not None)


@dataclass(frozen=True)
class RetryRun:
    attempted: int
    tally: Tally

    @property
    def delivered(self) -> int:
        return self.tally.delivered


def retry_due(
    deployment: Deployment, now: int | None = None, limit: int = 200, has_time: Callable[[], bool] = lambda: True
) -> RetryRun:
    """Send the deliveries whose next attempt is due (the scheduled retry function)."""
    now = int(time.time()) if now is None else now
    store = deployment.storage.webhook_deliveries

    def retry(delivery: WebhookDelivery) -> Attempted | None:
        try:
            if not has_time() or not store.claim(delivery, now + CLAIM_SECONDS):
                return None  # out of time, or another run took it
            return attempt(deployment, delivery, now)
        except StorageUnavailable:
            return None  # still due (or claimed, then due again in a minute): the next run sends it

    outcomes = [o for o in _in_parallel(retry, store.due(now, limit)) if o is not None]
    return RetryRun(attempted=len(outcomes), tally=Tally.of(outcomes))


def redrive_dead_letters(deployment: Deployment, now: int | None = None, limit: int = 1000) -> int:
    """Every dead letter due again now, with a fresh 24-hour window. Answers how many."""
    now = int(time.time()) if now is None else now
    store = deployment.storage.webhook_deliveries
    return sum(store.redrive(d.deliveryId, now) for d in store.dead_letters(limit))
