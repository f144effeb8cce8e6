"""Calls to AWS services (DynamoDB, KMS) bounded by the invocation's deadline.

botocore's Config (timeouts, retries) is fixed per client, and a container keeps its clients while each
invocation brings its own deadline. So each client has short fixed timeouts and no retries of its own, and
`call` retries here: transient failures only, with a short jittered backoff, and only while the deadline
leaves room for a whole attempt (connect + read timeout). A timed-out attempt is not retried: a dependency
that hangs once hangs again, and one attempt already spent many times a normal call's time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from . import deadline
from .errors import StorageUnavailable

_T = TypeVar("_T")
MAX_ATTEMPTS = 3
_BACKOFF_BASE_SECONDS = 0.025
_BACKOFF_CAP_SECONDS = 0.2
# Codes AWS documents as worth retrying (throttling, service-side trouble); any 5xx is too.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSInternalException",
    }
)


def client_config(connect_timeout: float, read_timeout: float, max_pool_connections: int = 10) -> Config:
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},  # retried by `call`, within the deadline
        tcp_keepalive=True,
        max_pool_connections=max_pool_connections,
    )


def _transient(error: Exception) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500
    return isinstance(error, (EndpointConnectionError, ConnectionClosedError))


def call(operation: Callable[..., _T], attempt_seconds: float, **request: Any) -> _T:
    """`operation(**request)`, retried on transient failures while the deadline leaves `attempt_seconds` for
    another attempt. StorageUnavailable when no attempt fits or all failed transiently or timed out; other
    errors (a refused condition, a request built wrong) are raised as botocore raised them."""
    for attempt in range(MAX_ATTEMPTS):
        if deadline.remaining() < attempt_seconds:
            raise StorageUnavailable("deadline")
        try:
            return operation(**request)
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            raise StorageUnavailable(type(error).__name__) from error
        except (ClientError, BotoCoreError) as error:
            if not _transient(error):
                raise
            if attempt + 1 == MAX_ATTEMPTS:
                code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
                raise StorageUnavailable(code or type(error).__name__) from error
        pause = random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))  # noqa: S311
        if not deadline.sleep(pause):
            raise StorageUnavailable("deadline")
    raise AssertionError("unreachable")
