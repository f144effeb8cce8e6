"""Each invocation's deadline, from the Lambda context: every DynamoDB, KMS and provider call must end before it.

The handler opens it (`invocation(context)`); calls ask `remaining()` for what they may still spend. The deadline
keeps ANSWER_MARGIN_SECONDS back, so a function whose dependency hangs still answers before Lambda stops it.
Outside an invocation (scripts, the keep-alive of tests) there is no deadline: only each call's own timeouts bound it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

ANSWER_MARGIN_SECONDS = 0.5  # to log, shape and return the answer once the last dependency gave up
# A context variable, not a global: the local gateway and the tests run invocations on several threads.
_deadline: ContextVar[float | None] = ContextVar("invocation_deadline", default=None)


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """The deadline of the invocation `context` belongs to (a LambdaContext), for the calls made inside."""
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
    if remaining_ms is None:
        yield
        return
    token = _deadline.set(time.monotonic() + remaining_ms / 1000 - ANSWER_MARGIN_SECONDS)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float:
    """Seconds the invocation may still spend on dependencies (infinite outside one; negative once past)."""
    deadline = _deadline.get()
    return math.inf if deadline is None else deadline - time.monotonic()


def sleep(seconds: float) -> bool:
    """Sleep `seconds` if the deadline leaves them (a backoff, a wait for another caller); False if it does not."""
    if remaining() <= seconds:
        return False
    time.sleep(seconds)
    return True
