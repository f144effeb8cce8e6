"""Register or revoke an API client.

    python -m scripts.clients register --name "Booking site" --prefix https://booking.example.com/calendar/
    python -m scripts.clients revoke <clientId>

The table is --table, else $API_CLIENTS_TABLE (the stack output ApiClientsTableName); the AWS
credentials and region are the usual ones. --endpoint points at DynamoDB Local.
The key is printed once and only its hash is stored: it cannot be shown again.
"""

from __future__ import annotations

import argparse
import os
import sys

import boto3

from calendar_connect.api_clients import register_client
from calendar_connect.dal import ApiClients
from calendar_connect.return_urls import ReturnUrlError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.environ.get("API_CLIENTS_TABLE"), help="API clients table name")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="DynamoDB endpoint URL")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="create a client and print its API key once")
    register.add_argument("--name", required=True)
    register.add_argument("--prefix", action="append", required=True, help="allowed return-URL prefix (repeatable)")
    revoke = commands.add_parser("revoke", help="revoke a client's key at once")
    revoke.add_argument("client_id")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("name the table with --table or API_CLIENTS_TABLE")

    store = ApiClients(boto3.client("dynamodb", endpoint_url=args.endpoint or None), args.table)
    if args.command == "register":
        try:
            client, api_key = register_client(store, args.name, args.prefix)
        except ReturnUrlError as error:
            parser.error(f"--prefix {error}")
        print(f"clientId: {client.clientId}")
        print(f"apiKey:   {api_key}")
        print("Store the key now: only its hash is kept.", file=sys.stderr)
        return 0
    if not store.revoke(args.client_id):
        print(f"no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.client_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
