"""Webhook dead letters: list them, or make them due again (redrive).

    python -m scripts.webhooks dead-letters      # one line per dead letter: webhook-id, client, type, why
    python -m scripts.webhooks redrive           # every dead letter due now, with a fresh 24-hour window

The table is --table, else $WEBHOOK_DELIVERIES_TABLE (the stack output WebhookDeliveriesTableName); the AWS
credentials and region are the usual ones. --endpoint points at DynamoDB Local. The retry function (every
minute) sends what is redriven, signed with the client's current secrets, under the event's own webhook-id.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import boto3

from calendar_connect.dal import WebhookDeliveries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.webhooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.environ.get("WEBHOOK_DELIVERIES_TABLE"), help="deliveries table")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="DynamoDB endpoint URL")
    parser.add_argument("command", choices=["dead-letters", "redrive"])
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("name the table with --table or WEBHOOK_DELIVERIES_TABLE")
    store = WebhookDeliveries(boto3.client("dynamodb", endpoint_url=args.endpoint or None), args.table)
    dead = store.dead_letters(limit=10_000)
    if args.command == "dead-letters":
        for d in dead:
            print(f"{d.deliveryId} {d.clientId} {d.eventType} attempts={d.attempts} {d.lastError or ''}".rstrip())
        return 0
    now = int(time.time())
    redriven = sum(store.redrive(d.deliveryId, now) for d in dead)
    print(f"redriven: {redriven}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
