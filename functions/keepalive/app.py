"""KeepAliveFunction: on its schedule, refresh the connections whose refresh tokens are due to be used."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from calendar_connect import deployment
from calendar_connect.keepalive import keep_alive
from calendar_connect.observability import logger, metrics, tracer

_METRICS = {
    "KeepAliveDue": "due",
    "KeepAliveRefreshed": "refreshed",
    "KeepAliveFailed": "failed",
    "KeepAliveReauthRequired": "reauth_required",
}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The EventBridge event carries nothing the run needs: what is due is read from the table.
    run = keep_alive(deployment.current(), context.get_remaining_time_in_millis)
    summary = run.summary()
    for name, field in _METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=int(summary[field]))
    logger.info("keep-alive run", extra=summary)
    return summary
