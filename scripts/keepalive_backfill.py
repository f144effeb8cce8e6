"""Put connections made before the keep-alive existed into its schedule (run once after deploying it).

    python -m scripts.keepalive_backfill [--spread-seconds 0]

Every CONNECTED connection without a keep-alive time gets one: due at once, or spread at random over
--spread-seconds. A connection written since the deployment already has one (the callback and every refresh set
it), and is left alone, as is one that stops being CONNECTED meanwhile. Finding them takes one Scan of the table:
this command's, never the keep-alive job's. Running it twice does nothing the second time.

The table is --table, else $CONNECTIONS_TABLE; the AWS credentials and region are the usual ones.
--endpoint points at DynamoDB Local.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

import boto3

from calendar_connect.dal import Connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.keepalive_backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.environ.get("CONNECTIONS_TABLE"), help="connections table name")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="DynamoDB endpoint URL")
    parser.add_argument("--spread-seconds", type=int, default=0, help="spread their due times over this long")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("name the table with --table or CONNECTIONS_TABLE")
    if args.spread_seconds < 0:
        parser.error("--spread-seconds must not be negative")

    store = Connections(boto3.client("dynamodb", endpoint_url=args.endpoint or None), args.table)
    now = int(time.time())
    scheduled = 0
    for connection_id in store.connected_without_keepalive():
        if store.schedule_keepalive(connection_id, now + secrets.randbelow(args.spread_seconds + 1)):
            scheduled += 1
    print(f"scheduled {scheduled} connection(s) for keep-alive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
