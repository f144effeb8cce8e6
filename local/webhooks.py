"""The runner's webhook machinery: the tables' streams read from DynamoDB Local and handed to the delivery
function as Lambda's event source mappings would, the retry function run on a short schedule, and one console
line per delivered event."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Self

import boto3

from local.background import BackgroundLoop
from local.dynamodb import LOCAL_CREDENTIALS
from local.schedule import scheduled_event
from local.streams import StreamReader
from local.template import Schedule, StreamMapping

_POLL_SECONDS = 0.5


class _DeliveredLine(logging.Handler):
    """One console line for each event a webhook receiver took (the functions' JSON log says more)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "webhook delivered":
            fields = record.__dict__
            print(
                f"webhook delivered: {fields.get('eventType')} {fields.get('webhookId')} "
                f"(attempt {fields.get('attempt')})",
                file=sys.stderr,
                flush=True,
            )


class LocalWebhooks(BackgroundLoop):
    """Runs in one background thread until stop(); every invocation goes through `invoke(function, event)`."""

    def __init__(
        self,
        endpoint: str,
        mappings: list[StreamMapping],
        schedules: list[Schedule],
        invoke: Callable[[str, dict[str, Any]], Any],
        retry_seconds: float,
        region: str,
    ) -> None:
        super().__init__("webhooks")
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, **LOCAL_CREDENTIALS)
        streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, **LOCAL_CREDENTIALS)
        self.failed_batches: list[dict[str, Any]] = []
        self.readers = [
            StreamReader(dynamodb, streams, mapping, self._invoker(invoke, mapping.function), self._on_failure)
            for mapping in mappings
        ]
        self._schedules = schedules
        self._invoke = invoke
        self._retry_seconds = retry_seconds
        self._region = region
        self._line = _DeliveredLine()

    @staticmethod
    def _invoker(invoke: Callable[[str, dict[str, Any]], Any], function: str) -> Callable[[dict[str, Any]], Any]:
        return lambda event: invoke(function, event)

    def _on_failure(self, failure: dict[str, Any]) -> None:
        # The OnFailure destination (an SQS queue in AWS) gets the batch's place on the stream; here, the console.
        self.failed_batches.append(failure)
        info = failure["DDBStreamBatchInfo"]
        print(
            f"stream batch failed after its retries: {info['streamArn']} {info['shardId']} "
            f"{info['startSequenceNumber']}..{info['endSequenceNumber']}",
            file=sys.stderr,
            flush=True,
        )

    def start(self) -> Self:
        from calendar_connect.observability import logger

        logging.getLogger(logger.name).addHandler(self._line)
        return super().start()

    def stop(self) -> None:
        super().stop()
        from calendar_connect.observability import logger

        logging.getLogger(logger.name).removeHandler(self._line)

    def _run(self) -> None:
        next_retry = time.monotonic() + self._retry_seconds
        while not self._stop.is_set():
            try:
                for reader in self.readers:
                    while reader.poll() and not self._stop.is_set():
                        pass
                if time.monotonic() >= next_retry:
                    next_retry = time.monotonic() + self._retry_seconds
                    for schedule in self._schedules:
                        self._invoke(schedule.function, scheduled_event(rule=schedule.function, region=self._region))
            except Exception as error:  # DynamoDB Local stopping, a function failing: say so, keep going
                if not self._stop.is_set():
                    print(f"webhooks: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            self._stop.wait(_POLL_SECONDS)
