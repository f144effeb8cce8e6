"""Warm latency: the handlers invoked in this process, each request next to the floor's same calls made directly."""

from __future__ import annotations

import hashlib
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from botocore.config import Config

from bench.flow import INITIATE_EVENTS, access_token_event, callback_event, connect, script_token_answer, start_attempt
from bench.stack import Stack
from calendar_connect.dal import Connections, keepalive_shard
from tests.support.lambda_runtime import EXAMPLE_CLIENT_ID, invoke, load_event

PENDING, CONNECTIONS, API_CLIENTS = "PendingAuthorizationsTable", "ConnectionsTable", "ApiClientsTable"


@dataclass
class Latencies:
    name: str
    ours: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    # Per request, the time outside DynamoDB and provider calls: the code's own work between the calls.
    ours_own: list[float] = field(default_factory=list)
    floor_own: list[float] = field(default_factory=list)

    def own_p50(self, floor: bool = False) -> float:
        return statistics.median(self.floor_own if floor else self.ours_own)

    def calls_p50(self, floor: bool = False) -> float:
        """Per request, the time inside the calls (total minus own work), then the median."""
        total, own = (self.floor, self.floor_own) if floor else (self.ours, self.ours_own)
        return statistics.median(t - o for t, o in zip(total, own, strict=True))

    @staticmethod
    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def p50(self, floor: bool = False) -> float:
        return statistics.median(self.floor if floor else self.ours)

    def p99(self, floor: bool = False) -> float:
        return self.percentile(self.floor if floor else self.ours, 0.99)


class Floor:
    """What any implementation must do per request: the same DynamoDB and HTTP calls, made directly."""

    def __init__(self, stack: Stack) -> None:
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
        self.db = boto3.client("dynamodb", endpoint_url=stack.dynamodb.endpoint, config=config)
        self.http = httpx.Client(timeout=8.0)
        self.stack = stack
        self.token_endpoint = f"{stack.provider.base_url}/google/token"

    def authenticate(self) -> None:
        self.db.get_item(TableName=API_CLIENTS, Key={"clientId": {"S": EXAMPLE_CLIENT_ID}}, ConsistentRead=True)

    def pending_item(self, state_hash: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "stateHash": {"S": state_hash},
            "providerId": {"S": "google"},
            "clientId": {"S": EXAMPLE_CLIENT_ID},
            "scheduleId": {"S": "schedule-42"},
            "returnUrl": {"S": "https://booking.example.com/calendar/connected?tab=staff"},
            "dialect": {"S": "wix"},
            "redirectUri": {"S": "https://calendar-connect.example.org/oauth2/callback"},
            "codeVerifier": {"S": secrets.token_urlsafe(64)},
            "nonce": {"S": secrets.token_urlsafe(16)},
            "createdAt": {"N": str(now)},
            "expiresAt": {"N": str(now + 600)},
            "status": {"S": "PENDING"},
            "requiresBrowserBinding": {"BOOL": False},
        }

    def initiate(self) -> None:
        self.authenticate()
        state_hash = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
        self.db.put_item(
            TableName=PENDING, Item=self.pending_item(state_hash), ConditionExpression="attribute_not_exists(stateHash)"
        )

    def prepare_callback(self) -> str:
        state_hash = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
        self.db.put_item(TableName=PENDING, Item=self.pending_item(state_hash))
        script_token_answer(self.stack, None)
        return state_hash

    def callback(self, state_hash: str) -> None:
        key = {"stateHash": {"S": state_hash}}
        now = str(int(time.time()))
        # The claim is the read: the attempt comes back with it (or, when the claim fails, with the error).
        self.db.update_item(
            TableName=PENDING,
            Key=key,
            UpdateExpression="SET #s = :c",
            ConditionExpression="#s = :p AND expiresAt > :now",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": {"S": "CONSUMED"}, ":p": {"S": "PENDING"}, ":now": {"N": now}},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        # The contract: an attempt whose API client was revoked meanwhile redeems no code.
        self.db.get_item(
            TableName=API_CLIENTS, Key={"clientId": {"S": EXAMPLE_CLIENT_ID}}, ProjectionExpression="clientId, revoked"
        )
        self.http.post(self.token_endpoint, data={"grant_type": "authorization_code", "code": "c"}).json()
        # The connection: the same upsert (expression, attributes, sizes) as Connections.upsert_connected.
        created = "2026-11-21T09:00:00Z"
        self.db.update_item(
            TableName=CONNECTIONS,
            Key={"connectionId": {"S": "floor-connection"}},
            UpdateExpression=Connections.UPSERT_CONNECTED,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":clientId": {"S": EXAMPLE_CLIENT_ID},
                ":providerId": {"S": "google"},
                ":calendarType": {"S": "GOOGLE"},
                ":scheduleId": {"S": "schedule-42"},
                ":externalAccountId": {"S": "110169484474386276334"},
                ":email": {"S": "staff.member@example.com"},
                ":scopesGranted": {
                    "L": [{"S": "openid"}, {"S": "email"}, {"S": "https://www.googleapis.com/auth/calendar"}]
                },
                ":status": {"S": "CONNECTED"},
                ":createdAt": {"S": created},
                ":updatedAt": {"S": created},
                ":tokens": {"B": secrets.token_bytes(175)},
                ":expiresAt": {"N": now},
                ":listKey": {"S": f"{EXAMPLE_CLIENT_ID}#{created}#floor-connection"},
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
                ":keepAliveShard": {"S": keepalive_shard("floor-connection")},
                ":keepAliveDueAt": {"N": str(int(now) + 544320)},
            },
            ReturnValues="ALL_NEW",
        )
        self.db.update_item(
            TableName=PENDING,
            Key=key,
            UpdateExpression="SET #s = :d, outcome = :o",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":d": {"S": "DONE"}, ":o": {"M": {"connectionId": {"S": "floor-connection"}}}},
        )

    def access_token(self, connection_id: str) -> None:
        self.authenticate()
        self.db.get_item(TableName=CONNECTIONS, Key={"connectionId": {"S": connection_id}}, ConsistentRead=True)


class CallClock:
    """Time spent inside the DynamoDB and provider calls of one side (ours or the floor's), per request.

    The clients' call methods are wrapped in place, the same way on both sides, so a request's time splits into
    the calls and the code's own work around them."""

    DYNAMODB = ("get_item", "put_item", "update_item", "query", "delete_item")
    HTTP = ("get", "post")

    def __init__(self, dynamodb: Any, http: Any) -> None:
        self.inside = 0.0
        for client, names in ((dynamodb, self.DYNAMODB), (http, self.HTTP)):
            for name in names:
                setattr(client, name, self._timed_call(getattr(client, name)))

    def _timed_call(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.inside += time.perf_counter() - started

        return call


def _timed(call: Callable[[], Any], clock: CallClock) -> tuple[float, float]:
    """(total ms, own ms: the part outside the clock's calls)."""
    clock.inside = 0.0
    started = time.perf_counter()
    call()
    total = time.perf_counter() - started
    return total * 1000, (total - clock.inside) * 1000


def _run(
    latencies: Latencies,
    ours: Callable[[], tuple[float, float]],
    floor: Callable[[], tuple[float, float]],
    iterations: int,
) -> Latencies:
    for _ in range(min(5, iterations)):  # warm both: connections open, lazy imports done
        ours()
        floor()
    for i in range(iterations):
        # Alternate which goes first, so neither always follows the other's garbage.
        if i % 2:
            (o, o_own), (f, f_own) = ours(), floor()
        else:
            (f, f_own), (o, o_own) = floor(), ours()
        latencies.ours.append(o)
        latencies.floor.append(f)
        latencies.ours_own.append(o_own)
        latencies.floor_own.append(f_own)
    return latencies


def _ok(answer: dict[str, Any], status: int) -> None:
    assert answer["statusCode"] == status, answer


def measure_warm(stack: Stack, iterations: int) -> list[Latencies]:
    from calendar_connect import deployment, oauth_client

    floor = Floor(stack)
    floor_clock = CallClock(floor.db, floor.http)
    ours_clock = CallClock(deployment.current().storage.client, oauth_client.http_client())
    results = []
    for dialect, event_file in INITIATE_EVENTS.items():
        event = load_event(event_file)
        results.append(
            _run(
                Latencies(f"initiate ({dialect})"),
                lambda event=event: _timed(lambda: _ok(invoke("InitiateFunction", event), 200), ours_clock),
                lambda: _timed(floor.initiate, floor_clock),
                iterations,
            )
        )

    def callback() -> tuple[float, float]:
        state, nonce = start_attempt()
        script_token_answer(stack, nonce)
        event = callback_event(state)
        return _timed(lambda: _ok(invoke("CallbackFunction", event), 302), ours_clock)

    def callback_floor() -> tuple[float, float]:
        state_hash = floor.prepare_callback()
        return _timed(lambda: floor.callback(state_hash), floor_clock)

    results.append(_run(Latencies("callback (success)"), callback, callback_floor, iterations))

    connection_id = connect(stack)
    event = access_token_event(connection_id)
    results.append(
        _run(
            Latencies("access-token (no refresh)"),
            lambda: _timed(lambda: _ok(invoke("InitiateFunction", event), 200), ours_clock),
            lambda: _timed(lambda: floor.access_token(connection_id), floor_clock),
            iterations,
        )
    )
    return results
