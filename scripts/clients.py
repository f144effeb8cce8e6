"""Register or revoke an API client.

    make client ARGS='register --name "Booking site" --prefix https://booking.example.com/calendar/'
    make client ARGS='revoke <clientId>'
    make client ARGS='--table <ApiClientsTableName output> --region eu-west-1 register --name ... --prefix ...'

Without --table it works on `make run`'s DynamoDB Local (127.0.0.1:$DYNAMODB_PORT, default 8000). With
--table (or $API_CLIENTS_TABLE) it works on that deployed table with your usual AWS credentials; the region
is --region, else $AWS_REGION / $AWS_DEFAULT_REGION / your AWS profile's. --endpoint names another DynamoDB.
The key is printed once and only its hash is stored: it cannot be shown again.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from calendar_connect.api_clients import register_client
from calendar_connect.dal import ApiClients
from calendar_connect.errors import StorageUnavailable
from calendar_connect.return_urls import ReturnUrlError
from local.dynamodb import LOCAL_CREDENTIALS

LOCAL_TABLE = "ApiClientsTable"  # local/template.py names local tables by their logical id


def _dynamodb(args: argparse.Namespace) -> tuple[Any, str, str]:
    """The DynamoDB client, table and a description of where they are."""
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
    if not args.table:
        endpoint = args.endpoint or f"http://127.0.0.1:{os.environ.get('DYNAMODB_PORT') or 8000}"
        client = boto3.client("dynamodb", endpoint_url=endpoint, config=config, **LOCAL_CREDENTIALS)
        return client, LOCAL_TABLE, f"make run's DynamoDB Local at {endpoint}"
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    if args.endpoint:  # another DynamoDB (e.g. a DynamoDB Local of your own) takes any region
        client = boto3.client("dynamodb", endpoint_url=args.endpoint, region_name=region or "us-east-1", config=config)
    else:
        client = boto3.client("dynamodb", region_name=region, config=config)
    return client, args.table, f"table {args.table} in {client.meta.region_name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make client ARGS=...", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--table", default=os.environ.get("API_CLIENTS_TABLE"), help="a deployed API clients table (stack output)"
    )
    parser.add_argument("--region", help="the deployed table's AWS region")
    parser.add_argument("--endpoint", help="DynamoDB endpoint URL (default: make run's, without --table)")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="create a client and print its API key once")
    register.add_argument("--name", required=True)
    register.add_argument("--prefix", action="append", required=True, help="allowed return-URL prefix (repeatable)")
    revoke = commands.add_parser("revoke", help="revoke a client's key at once")
    revoke.add_argument("client_id")
    args = parser.parse_args(argv)

    try:
        dynamodb, table, where = _dynamodb(args)
    except NoRegionError:
        parser.error("name the table's region with --region (or set AWS_REGION)")
    store = ApiClients(dynamodb, table)
    try:
        if args.command == "register":
            try:
                client, api_key = register_client(store, args.name, args.prefix)
            except ReturnUrlError as error:
                parser.error(f"--prefix {error}")
            print(f"clientId: {client.clientId}")
            print(f"apiKey:   {api_key}")
            print(f"Registered in {where}. Store the key now: only its hash is kept.", file=sys.stderr)
            return 0
        if not store.revoke(args.client_id):
            print(f"no client {args.client_id} in {where}", file=sys.stderr)
            return 1
    except (BotoCoreError, ClientError, StorageUnavailable) as error:
        hint = " (is `make run` running?)" if not args.table else ""
        print(f"could not reach {where}{hint}: {error}", file=sys.stderr)
        return 1
    print(f"revoked {args.client_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
