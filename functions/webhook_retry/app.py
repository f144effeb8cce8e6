"""WebhookRetryFunction (every minute): sends the webhook events whose next attempt is due."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from calendar_connect import deadline, deployment
from calendar_connect.observability import add_webhook_attempts, logger, metrics, tracer
from calendar_connect.webhook_delivery import retry_due

_RESERVE_MS = 15_000  # an attempt may take 10 s: none starts closer than this to the timeout


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):  # every DynamoDB call ends before the deadline
        run = retry_due(deployment.current(), has_time=lambda: context.get_remaining_time_in_millis() > _RESERVE_MS)
    tally = run.tally  # added up here, in the handler's thread, from the pool's results
    add_webhook_attempts(tally.delivered, tally.retried, tally.dead_lettered, tally.latencies_ms)
    return {"attempted": run.attempted, "delivered": run.delivered}
