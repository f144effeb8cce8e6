"""KeepAliveFunction: on its schedule, refresh the connections whose refresh tokens are due to be used."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from calendar_connect import deployment
from calendar_connect.dal import KEEPALIVE_SHARDS
from calendar_connect.keepalive import keep_alive
from calendar_connect.observability import KEEPALIVE_METRICS, logger, metrics, tracer


class KeepAliveInput(BaseModel):
    """What a schedule passes (template.yaml: each schedule takes a group of the index's shards); EventBridge's own
    scheduled event, which has no `shards`, means all of them."""

    shards: list[int] | None = Field(default=None, min_length=1)

    def chosen(self) -> list[int] | None:
        if self.shards is not None and not all(0 <= n < KEEPALIVE_SHARDS for n in self.shards):
            raise ValueError(f"shards must lie in 0..{KEEPALIVE_SHARDS - 1}")
        return self.shards


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    shards = KeepAliveInput.model_validate({"shards": event.get("shards")}).chosen()
    run = keep_alive(deployment.current(), context.get_remaining_time_in_millis, shards=shards)
    summary = run.summary()
    for name, field in KEEPALIVE_METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=int(summary[field]))
    logger.info("keep-alive run", extra={**summary, "shards": shards or "all"})
    return summary
