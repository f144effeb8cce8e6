"""EventBridge schedules, locally: a function invoked with the scheduled event every so many seconds."""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from local.background import BackgroundLoop
from local.template import ROOT

SCHEDULED_EVENT = ROOT / "events" / "schedule" / "keepalive.json"


def scheduled_event(now: float | None = None, *, rule: str | None = None, region: str | None = None) -> dict[str, Any]:
    """What an EventBridge schedule rule sends: the file in events/schedule/, with this firing's id and time, and the
    rule and region when given."""
    event = dict(json.loads(SCHEDULED_EVENT.read_text()))
    event["id"] = str(uuid.uuid4())
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if region:
        event["region"] = region
    if rule:
        event["resources"] = [f"arn:aws:events:{event['region']}:{event['account']}:rule/{rule}"]
    return event


class ScheduledJob(BackgroundLoop):
    """Calls `invoke` with a scheduled event every `interval` seconds until stopped; prints `describe(answer)`."""

    def __init__(
        self, name: str, invoke: Callable[[dict[str, Any]], Any], interval: float, describe: Callable[[Any], str]
    ) -> None:
        super().__init__(name)
        self.interval = interval
        self._invoke = invoke
        self._describe = describe

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                answer = self._invoke(scheduled_event())
            except Exception:
                # As Lambda would: the run failed and is logged; the schedule fires again all the same.
                sys.stderr.write(f"{self.name} failed:\n{traceback.format_exc()}")
                continue
            print(f"{self.name}: {self._describe(answer)}", flush=True)
