"""Each AWS and HTTP call of one request, timed where it is made: a request's time splits into its calls and the
code's own work around them, call by call.

Installed the same way on both sides (ours and the floor), in the process that makes the request, and outermost:
an AWS call's time holds botocore's work, the X-Ray subsegment of ours when tracing is on and the round trip; an HTTP
call's, httpx's work and the round trip. Imports nothing at import time (the cold-start children count imports).
"""

from __future__ import annotations

import time
from typing import Any


class CallLog:
    def __init__(self) -> None:
        self.calls: list[list[Any]] = []  # [name, ms], in order
        self.import_ms = 0.0  # importing httpx here, when the request would have imported it on first use

    def install(self) -> CallLog:
        import sys

        from botocore.client import BaseClient

        started = time.perf_counter()
        imported = "httpx" in sys.modules
        import httpx

        self.import_ms = 0.0 if imported else _ms_since(started)

        make_api_call = BaseClient._make_api_call  # X-Ray's wrapper when botocore is patched: timed with the call

        def timed_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return make_api_call(client, operation, params)
            finally:
                service = client.meta.service_model.service_id
                table = params.get("TableName")
                self.calls.append(
                    [f"{service} {operation}" + (f" {table}" if table else ""), _ms_since(started)],
                )

        BaseClient._make_api_call = timed_api_call  # type: ignore[method-assign]
        # The class that defines send: X-Ray's patch replaces httpx.Client by a subclass of it.
        sender = next(cls for cls in httpx.Client.__mro__ if "send" in vars(cls))
        send = sender.send

        def timed_send(client: Any, request: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(client, request, **kwargs)
            finally:
                self.calls.append([f"HTTP {request.method} {request.url.path}", _ms_since(started)])

        sender.send = timed_send  # type: ignore[method-assign]
        return self

    def total_ms(self) -> float:
        return sum(ms for _, ms in self.calls)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
