"""The demo site's webhook receiver: it verifies each delivery with a Standard Webhooks library (the
`standardwebhooks` package, as a customer's website would) and keeps the latest ones to show."""

from __future__ import annotations

import html
import json
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.wrappers import Request, Response

WEBHOOK_PATH = "/demo/webhooks"
_KEPT = 50


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event_type: str
    timestamp: str
    summary: str  # connectionId and status, or the failure's error and reason


def _summary(data: dict[str, Any]) -> str:
    if "connectionId" in data:
        return f"{data['connectionId']} {data.get('status', '')}"
    return f"{data.get('error', '')}/{data.get('reason', '')} ({data.get('attemptId', '')})"


class WebhookInbox:
    def __init__(self) -> None:
        self.secret = ""
        self._deliveries: deque[Delivery] = deque(maxlen=_KEPT)
        self._lock = threading.Lock()

    def receive(self, request: Request) -> Response:
        """A delivery: 204 when its signature verifies, 400 (and nothing kept) when it does not."""
        body = request.get_data(as_text=True)
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers.items())) if self.secret else None
        except WebhookVerificationError:
            event = None
        if not isinstance(event, dict):
            print("demo webhook receiver: a delivery failed verification", file=sys.stderr, flush=True)
            return Response("signature does not verify", 400)
        delivery = Delivery(
            request.headers.get("webhook-id", ""),
            str(event.get("type", "")),
            str(event.get("timestamp", "")),
            _summary(event.get("data") or {}),
        )
        with self._lock:
            if all(d.webhook_id != delivery.webhook_id for d in self._deliveries):  # at least once: keep one
                self._deliveries.appendleft(delivery)
        print(
            f"demo webhook receiver: {delivery.event_type} {delivery.webhook_id} (signature verified)",
            file=sys.stderr,
            flush=True,
        )
        return Response(status=204)

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def section(self) -> str:
        """The page's list of deliveries (escaped), newest first."""
        rows = "".join(
            f"<tr data-webhook-id={html.escape(d.webhook_id, quote=True)}><td>{html.escape(d.timestamp)}</td>"
            f"<td class=event-type>{html.escape(d.event_type)}</td><td><code>{html.escape(d.summary)}</code></td>"
            f"<td><code>{html.escape(d.webhook_id)}</code></td><td>verified</td></tr>"
            for d in self.deliveries()
        )
        table = (
            "<table id=webhook-deliveries><tr><th>time</th><th>event</th><th>data</th><th>webhook-id</th>"
            "<th>signature</th></tr>" + rows + "</table>"
            if rows
            else "<p id=no-webhooks>No webhook deliveries yet.</p>"
        )
        return (
            f"<h2>Webhook deliveries</h2><p>This site's receiver, <code>{html.escape(WEBHOOK_PATH)}</code>, checks "
            "each signature with a Standard Webhooks library. "
            f'<a href="{html.escape(WEBHOOK_PATH)}">Watch them arrive</a>.</p>{table}'
        )

    def as_json(self) -> str:
        return json.dumps([d.__dict__ for d in self.deliveries()])
