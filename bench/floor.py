"""The floor: what any implementation must do per request, the same DynamoDB and HTTP calls made directly.

Imports only boto3, httpx and the DAL's upsert expression, so that a child on the Lambda-like site can run it."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import boto3
import httpx
from botocore.config import Config

from calendar_connect.dal import Connections, keepalive_shard

PENDING, CONNECTIONS, API_CLIENTS = "PendingAuthorizationsTable", "ConnectionsTable", "ApiClientsTable"


class Floor:
    """What any implementation must do per request: the same DynamoDB and HTTP calls, made directly."""

    def __init__(self, dynamodb_endpoint: str, token_endpoint: str, client_id: str) -> None:
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
        self.db = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, config=config)
        self.http = httpx.Client(timeout=8.0)
        self.token_endpoint = token_endpoint
        self.client_id = client_id

    def authenticate(self) -> None:
        self.db.get_item(TableName=API_CLIENTS, Key={"clientId": {"S": self.client_id}}, ConsistentRead=True)

    def pending_item(self, state_hash: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "stateHash": {"S": state_hash},
            "providerId": {"S": "google"},
            "clientId": {"S": self.client_id},
            "scheduleId": {"S": "schedule-42"},
            "returnUrl": {"S": "https://booking.example.com/calendar/connected?tab=staff"},
            "dialect": {"S": "wix"},
            "redirectUri": {"S": "https://calendar-connect.example.org/oauth2/callback"},
            "codeVerifier": {"S": secrets.token_urlsafe(64)},
            "nonce": {"S": secrets.token_urlsafe(16)},
            "createdAt": {"N": str(now)},
            "expiresAt": {"N": str(now + 600)},
            "status": {"S": "PENDING"},
            "requiresBrowserBinding": {"BOOL": False},
        }

    def initiate(self) -> None:
        self.authenticate()
        state_hash = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
        self.db.put_item(
            TableName=PENDING, Item=self.pending_item(state_hash), ConditionExpression="attribute_not_exists(stateHash)"
        )

    def put_attempt(self) -> str:
        """A pending attempt for `callback` to claim; its state hash."""
        state_hash = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
        self.db.put_item(TableName=PENDING, Item=self.pending_item(state_hash))
        return state_hash

    def callback(self, state_hash: str) -> None:
        key = {"stateHash": {"S": state_hash}}
        now = str(int(time.time()))
        # The claim is the read: the attempt comes back with it (or, when the claim fails, with the error).
        self.db.update_item(
            TableName=PENDING,
            Key=key,
            UpdateExpression="SET #s = :c",
            ConditionExpression="#s = :p AND expiresAt > :now",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": {"S": "CONSUMED"}, ":p": {"S": "PENDING"}, ":now": {"N": now}},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        # The contract: an attempt whose API client was revoked meanwhile redeems no code.
        self.db.get_item(
            TableName=API_CLIENTS, Key={"clientId": {"S": self.client_id}}, ProjectionExpression="clientId, revoked"
        )
        self.http.post(self.token_endpoint, data={"grant_type": "authorization_code", "code": "c"}).json()
        # The connection: the same upsert (expression, attributes, sizes) as Connections.upsert_connected.
        created = "2026-11-21T09:00:00Z"
        self.db.update_item(
            TableName=CONNECTIONS,
            Key={"connectionId": {"S": "floor-connection"}},
            UpdateExpression=Connections.UPSERT_CONNECTED,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":clientId": {"S": self.client_id},
                ":providerId": {"S": "google"},
                ":calendarType": {"S": "GOOGLE"},
                ":scheduleId": {"S": "schedule-42"},
                ":externalAccountId": {"S": "110169484474386276334"},
                ":email": {"S": "staff.member@example.com"},
                ":scopesGranted": {
                    "L": [{"S": "openid"}, {"S": "email"}, {"S": "https://www.googleapis.com/auth/calendar"}]
                },
                ":status": {"S": "CONNECTED"},
                ":createdAt": {"S": created},
                ":updatedAt": {"S": created},
                ":tokens": {"B": secrets.token_bytes(175)},
                ":expiresAt": {"N": now},
                ":listKey": {"S": f"{self.client_id}#{created}#floor-connection"},
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
                ":keepAliveShard": {"S": keepalive_shard("floor-connection")},
                ":keepAliveDueAt": {"N": str(int(now) + 544320)},
            },
            ReturnValues="ALL_NEW",
        )
        self.db.update_item(
            TableName=PENDING,
            Key=key,
            UpdateExpression="SET #s = :d, outcome = :o",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":d": {"S": "DONE"}, ":o": {"M": {"connectionId": {"S": "floor-connection"}}}},
        )

    def access_token(self, connection_id: str) -> None:
        self.authenticate()
        self.db.get_item(TableName=CONNECTIONS, Key={"connectionId": {"S": connection_id}}, ConsistentRead=True)
