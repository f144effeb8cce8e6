"""WebhookDeliveryFunction: DynamoDB Streams batches (Connections, PendingAuthorizations) in, webhook events out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from calendar_connect import deadline, deployment
from calendar_connect.observability import add_webhook_attempts, logger, metrics, tracer
from calendar_connect.webhook_delivery import handle_stream_records

_RESERVE_MS = 15_000  # a first attempt may take 10 s: none starts closer than this to the timeout


@logger.inject_lambda_context(clear_state=True)  # never log_event: the images hold sealed tokens and PKCE verifiers
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):  # every DynamoDB call ends before the deadline
        result = handle_stream_records(
            deployment.current(),
            event.get("Records") or [],
            has_time=lambda: context.get_remaining_time_in_millis() > _RESERVE_MS,
        )
    tally = result.tally  # added up here, in the handler's thread, from the pool's results
    add_webhook_attempts(tally.delivered, tally.retried, tally.dead_lettered, tally.latencies_ms)
    # ReportBatchItemFailures: the stream gives this record and those after it again.
    failures = [{"itemIdentifier": result.failed_sequence_number}] if result.failed_sequence_number else []
    return {"batchItemFailures": failures}
