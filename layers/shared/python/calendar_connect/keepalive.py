"""The keep-alive job: use each CONNECTED connection's refresh token before its provider forgets it.

Due connections come from the sparse keep-alive index (never a Scan); each is refreshed by the access-token
route's own code (connections.refresh_connection), a bounded number at once, until the invocation's time runs
short. Whatever is not refreshed stays due for the next run: a transient failure changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from enum import Enum

from .connections import REAUTH_REQUIRED, refresh_connection, stored_tokens
from .deployment import Deployment
from .errors import ApiError, FailedPrecondition, StorageUnavailable
from .observability import logger
from .records import ConnectionStatus, TokenSet

PAGE_SIZE = 100  # connection ids per index query: 16 shards' worth is well inside one query's 1 MB


class Outcome(Enum):
    REFRESHED = "refreshed"
    REAUTH_REQUIRED = "reauth_required"
    FAILED = "failed"  # transient or not, nothing changed: still due next run
    SKIPPED = "skipped"  # refreshed, reconnected or disconnected by someone else meanwhile


@dataclass
class KeepAliveRun:
    due: int = 0  # taken from the index this run
    refreshed: int = 0
    reauth_required: int = 0
    failed: int = 0
    skipped: int = 0
    stopped_early: bool = False  # the invocation's time ran short: the rest stays due

    def count(self, outcome: Outcome) -> None:
        name = outcome.value
        setattr(self, name, getattr(self, name) + 1)

    def summary(self) -> dict[str, int | bool]:
        return asdict(self)


def keep_alive(
    deployment: Deployment,
    remaining_ms: Callable[[], int],
    now: int | None = None,
    shards: Sequence[int] | None = None,
) -> KeepAliveRun:
    """One run over the connections due by `now` (in `shards` of the index, default all); stops taking work when
    `remaining_ms()` falls under the margin."""
    settings = deployment.settings
    now = int(time.time()) if now is None else now
    margin_ms = settings.keepalive_stop_margin_seconds * 1000
    run = KeepAliveRun()
    in_flight: set[Future[Outcome]] = set()

    def collect(done: set[Future[Outcome]]) -> None:
        for future in done:
            run.count(future.result())

    with ThreadPoolExecutor(settings.keepalive_concurrency, thread_name_prefix="keepalive") as pool:
        try:
            for page in deployment.storage.connections.due_for_keepalive(now, PAGE_SIZE, shards):
                for connection_id in page:
                    if remaining_ms() < margin_ms:
                        run.stopped_early = True
                        break
                    if len(in_flight) >= settings.keepalive_concurrency:
                        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        collect(done)
                    in_flight.add(pool.submit(keep_one_alive, deployment, connection_id, now))
                    run.due += 1
                if run.stopped_early:
                    break
        except StorageUnavailable as error:
            logger.warning("keep-alive index unreadable; the rest waits for the next run", extra={"cause": str(error)})
            run.stopped_early = True
        collect(wait(in_flight).done)
    return run


def keep_one_alive(deployment: Deployment, connection_id: str, now: int) -> Outcome:
    """Read the connection as it stands, and refresh it if it is still CONNECTED and due."""
    try:
        record = deployment.storage.connections.get(connection_id)
        if record is None or record.status is not ConnectionStatus.CONNECTED:
            return Outcome.SKIPPED
        if record.keepAliveDueAt is not None and record.keepAliveDueAt > now:
            return Outcome.SKIPPED  # used since the index was read (the access-token route refreshed it)
        tokens = stored_tokens(deployment, record)
        if tokens is None:
            logger.error("connected without tokens", extra={"connectionId": connection_id})
            return Outcome.FAILED
        outcome = refresh_connection(deployment, record, tokens, now)
        return Outcome.REFRESHED if isinstance(outcome, TokenSet) else Outcome.SKIPPED
    except FailedPrecondition as error:
        if error.application_code == REAUTH_REQUIRED:
            return Outcome.REAUTH_REQUIRED
        logger.warning("keep-alive refresh refused", extra={"connectionId": connection_id, "code": error.code})
        return Outcome.FAILED
    except (ApiError, StorageUnavailable) as error:
        logger.warning(
            "keep-alive refresh failed; due again next run",
            extra={"connectionId": connection_id, "cause": type(error).__name__},
        )
        return Outcome.FAILED
    except Exception:
        logger.exception("keep-alive refresh failed unexpectedly", extra={"connectionId": connection_id})
        return Outcome.FAILED
