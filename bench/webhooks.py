"""Webhook delivery figures: events per second from the Connections stream, through WebhookDeliveryFunction
(the event source mapping's batches), signed and posted to a receiver on 127.0.0.1, each recorded as delivered."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import boto3

from bench.stack import Stack
from local.dynamodb import LOCAL_CREDENTIALS
from local.streams import StreamReader
from local.template import load_template, stream_mappings
from tests.support.lambda_runtime import invoke
from tests.support.webhook_receiver import WebhookReceiver


@dataclass(frozen=True)
class WebhookFigures:
    events: int
    seconds: float
    batch_size: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def measure_webhooks(stack: Stack, events: int) -> WebhookFigures:
    from calendar_connect import deployment
    from calendar_connect.api_clients import register_client
    from calendar_connect.records import ConnectionRecord, ConnectionStatus
    from calendar_connect.webhooks import put_webhook

    saved = os.environ.get("ALLOW_PRIVATE_WEBHOOKS")
    os.environ["ALLOW_PRIVATE_WEBHOOKS"] = "true"  # the receiver is on 127.0.0.1
    deployment.reset()
    receiver = WebhookReceiver().start()
    try:
        here = deployment.current()
        client, _ = register_client(here.storage.api_clients, "webhook bench", ["https://bench.example/"])
        receiver.secret = put_webhook(here, client, receiver.url).secret or ""
        mapping = next(m for m in stream_mappings(load_template()) if m.table == "ConnectionsTable")
        streams = boto3.client("dynamodbstreams", endpoint_url=stack.dynamodb.endpoint, **LOCAL_CREDENTIALS)
        reader = StreamReader(
            stack.dynamodb.client(), streams, mapping, lambda e: invoke(mapping.function, e), print, "LATEST"
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        google = here.providers["google"]
        for n in range(events):  # the changes, written before the clock starts: delivery is what is measured
            here.storage.connections.upsert_connected(
                ConnectionRecord(
                    connectionId=f"bench-webhook-{n}",
                    clientId=client.clientId,
                    providerId="google",
                    calendarType="GOOGLE",
                    scheduleId="bench",
                    externalAccountId=f"account-{n}",
                    status=ConnectionStatus.CONNECTED,
                    createdAt=stamp,
                    updatedAt=stamp,
                    # Next due as the callback sets it: without one (0) the keep-alive bench would refresh these too.
                    keepAliveDueAt=google.next_keepalive_at(int(time.time())),
                )
            )
        started = time.perf_counter()
        while reader.poll():
            pass
        seconds = time.perf_counter() - started
        delivered = len([r for r in receiver.events("connection.created") if r.verified])
        if delivered != events:
            raise RuntimeError(f"{delivered} of {events} webhook events delivered and verified")
        return WebhookFigures(events, seconds, mapping.batch_size)
    finally:
        receiver.stop()
        if saved is None:
            os.environ.pop("ALLOW_PRIVATE_WEBHOOKS", None)
        else:
            os.environ["ALLOW_PRIVATE_WEBHOOKS"] = saved
        deployment.reset()


def webhook_rows(figures: WebhookFigures) -> str:
    return (
        f"| webhook delivery, {figures.events} connection.created events from the stream (batches of "
        f"{figures.batch_size}) to a receiver on 127.0.0.1, signed, verified, recorded | "
        f"{figures.per_second:.0f} events/s ({figures.seconds * 1000 / figures.events:.1f} ms each) | | | |"
    )
