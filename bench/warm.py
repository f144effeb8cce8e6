"""Warm latency: the handlers invoked in this process, each request next to the floor's same calls made directly."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.floor import Floor
from bench.flow import INITIATE_EVENTS, access_token_event, callback_event, connect, script_token_answer, start_attempt
from bench.stack import Stack
from tests.support.lambda_runtime import EXAMPLE_CLIENT_ID, invoke, load_event


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


def token_endpoint(stack: Stack) -> str:
    return f"{stack.provider.base_url}/google/token"


def floor_on(stack: Stack) -> Floor:
    return Floor(stack.dynamodb.endpoint, token_endpoint(stack), EXAMPLE_CLIENT_ID)


def prepare_floor_callback(floor: Floor, stack: Stack) -> str:
    """A pending attempt for the floor's callback to claim, and the token server's answer to it."""
    state_hash = floor.put_attempt()
    script_token_answer(stack, None)
    return state_hash


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

    floor = floor_on(stack)
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
        state_hash = prepare_floor_callback(floor, stack)
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
