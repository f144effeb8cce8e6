"""A webhook receiver on 127.0.0.1, as a client's website would run one: it verifies every delivery with the
`standardwebhooks` package (never with our own signing code) and records what it received."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.wrappers import Request, Response

from local.serving import ServerThread


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def verifies(secret: str, received: Received) -> bool:
    try:
        Webhook(secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


class WebhookReceiver:
    """Answers `status` (200 unless told); `stop()` takes it off the network, `start()` brings it back on its port."""

    def __init__(self, secret: str = "", port: int = 0) -> None:
        self.secret = secret
        self.status = 200
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ServerThread | None = None
        self.port = port

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data(as_text=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = bool(self.secret) and verifies(self.secret, Received(headers, body, False))
        with self._lock:
            self.received.append(Received(headers, body, verified))
        return Response("", self.status)(environ, start_response)

    def start(self) -> WebhookReceiver:
        self._server = ServerThread(self, self.port, name="webhook-receiver", quiet=True).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def events(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if kind is None or r.event.get("type") == kind]

    def wait_for(self, kind: str, timeout: float = 30.0, count: int = 1) -> list[Received]:
        """Poll (bounded) until `count` deliveries of `kind` have arrived."""
        deadline = time.monotonic() + timeout
        while len(found := self.events(kind)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} {kind} not received within {timeout:.0f}s; got {self.events()}")
            time.sleep(0.05)
        return found
