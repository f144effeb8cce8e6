"""Before a SnapStart snapshot: botocore's first-call setup of each operation, by calls answered in-process.

A client's first call of an operation builds what every later call reuses: the operation model and the shapes of
its request and answer, the event names' aliases and handler lists, the serializer's and parser's paths, the
endpoint rules' answer, the service's exception classes. Priming makes each call as a request would, up to the wire,
and botocore's own events keep it off the wire: `choose-signer` turns the client's signing off (its credentials are
neither read nor used) and `request-created` signs with placeholder credentials instead, `before-endpoint-resolution`
leaves the account id out of the endpoint rules (it would read the credentials), and `before-send` answers in-process
with a fixed answer of the operation's shape. The handlers are registered only while priming. Nothing in a primed
request or answer is unique (fixed placeholders), and the calls bypass the X-Ray patch of botocore: no subsegment is
made or sent during init.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import botocore
from botocore.auth import AUTH_TYPE_MAPS
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.client import BaseClient
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.regions import EndpointResolverBuiltins

try:
    from urllib3 import HTTPHeaderDict
except ImportError:  # urllib3 1.26, which some Lambda runtimes' botocore still uses
    from urllib3._collections import HTTPHeaderDict

from .observability import logger

if TYPE_CHECKING:
    from .settings import Settings

# One attribute of every type the DAL writes and reads (strings, numbers, bytes, booleans, lists, maps): requests and
# answers shaped like these walk the same shapes of DynamoDB's model as the real ones do.
_VALUE = {"S": "-"}
_ITEM: dict[str, Any] = {
    "s": _VALUE,
    "n": {"N": "0"},
    "b": {"B": b"\0"},
    "t": {"BOOL": False},
    "l": {"L": [_VALUE]},
    "m": {"M": {"s": _VALUE}},
}
_NAMES = {"#s": "s"}


def _wire(value: Any) -> Any:
    """An item as it comes over the wire (bytes in base64), for the in-process answers."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _wire(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_wire(inner) for inner in value]
    return value


def dynamodb_calls(tables: Iterable[str]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(operation, request, answer) for every DynamoDB operation the request functions make, on each of `tables`,
    with the parameters the DAL passes."""
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    item, wire_item = _ITEM, _wire(_ITEM)
    for table in tables:
        calls += [
            (
                "GetItem",
                {
                    "TableName": table,
                    "Key": {"s": _VALUE},
                    "ConsistentRead": True,
                    "ProjectionExpression": "#s",
                    "ExpressionAttributeNames": _NAMES,
                },
                {"Item": wire_item},
            ),
            (
                "PutItem",
                {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(s)"},
                {},
            ),
            (
                "UpdateItem",
                {
                    "TableName": table,
                    "Key": {"s": _VALUE},
                    "UpdateExpression": "SET #s = :s",
                    "ConditionExpression": "attribute_exists(s)",
                    "ExpressionAttributeNames": _NAMES,
                    "ExpressionAttributeValues": {f":{name}": value for name, value in item.items()},
                    "ReturnValues": "ALL_NEW",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                {"Attributes": wire_item},
            ),
            (
                "Query",
                {
                    "TableName": table,
                    "IndexName": "---",
                    "KeyConditionExpression": "s = :s",
                    "ExpressionAttributeValues": {":s": _VALUE},
                    "Limit": 1,
                    "ExclusiveStartKey": {"s": _VALUE},
                },
                {"Items": [wire_item], "Count": 1, "ScannedCount": 1, "LastEvaluatedKey": {"s": _VALUE}},
            ),
        ]
    return calls


def kms_calls(key_id: str, context: dict[str, str]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(operation, request, answer) for the token cipher's KMS operations; the answers' keys are zeros, and are
    dropped: priming never makes or keeps a data key."""
    zeros = base64.b64encode(bytes(32)).decode()
    return [
        (
            "GenerateDataKey",
            {"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": context},
            {"CiphertextBlob": zeros, "Plaintext": zeros, "KeyId": key_id},
        ),
        (
            "Decrypt",
            {"CiphertextBlob": bytes(32), "EncryptionContext": context, "KeyId": key_id},
            {"Plaintext": zeros, "KeyId": key_id},
        ),
    ]


class _Body:
    """An in-process answer's body, read as botocore reads a urllib3 response's."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


@contextmanager
def _answered_in_process(client: BaseClient, answers: dict[str, bytes]) -> Iterator[None]:
    service = client.meta.service_model.service_id.hyphenize()
    content_type = "application/x-amz-json-" + client.meta.service_model.metadata.get("jsonVersion", "1.0")

    def unsigned(**_: Any) -> Any:
        return botocore.UNSIGNED

    def without_account(builtins: dict[str, Any], **_: Any) -> None:
        builtins[EndpointResolverBuiltins.ACCOUNT_ID] = None

    # Signed as a request is (SigV4: canonical request, headers, HMAC), with placeholder credentials, never the
    # client's; the signature is dropped with the request.
    signer = AUTH_TYPE_MAPS[client.meta.service_model.signature_version](
        Credentials("priming", "priming", "priming"), client.meta.service_model.signing_name, client.meta.region_name
    )

    def signed(request: Any, **_: Any) -> None:
        signer.add_auth(request)

    def answer(request: Any, event_name: str, **_: Any) -> AWSResponse:
        # The headers' type is the one urllib3 answers with (botocore copies them into its own).
        headers = HTTPHeaderDict({"x-amzn-RequestId": "priming", "Content-Type": content_type})
        return AWSResponse(request.url, 200, headers, _Body(answers[event_name.rsplit(".", 1)[-1]]))

    handlers = (
        (f"choose-signer.{service}", unsigned),
        (f"request-created.{service}", signed),
        (f"before-endpoint-resolution.{service}", without_account),
        (f"before-send.{service}", answer),
    )
    events = client.meta.events
    for event, handler in handlers:
        events.register_first(event, handler, unique_id=f"calendar-connect-priming-{event}")
    try:
        yield
    finally:
        for event, handler in handlers:
            events.unregister(event, handler, unique_id=f"calendar-connect-priming-{event}")


def prime(client: BaseClient, calls: Iterable[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """Make each (operation, request, answer) through `client` as a request would, answered in-process: never sent,
    never signed. The client's connections, credentials and configuration are left as they were."""
    calls = list(calls)
    answers = {operation: json.dumps(answer).encode() for operation, _, answer in calls}
    # The method X-Ray's patch wraps: the calls are botocore's alone (no subsegment during init).
    make_api_call = getattr(BaseClient._make_api_call, "__wrapped__", BaseClient._make_api_call)
    _ = client.exceptions  # the service's error classes, built on the first error otherwise
    with _answered_in_process(client, answers):
        for operation, request, _answer in calls:
            try:
                make_api_call(client, operation, request)
            except (BotoCoreError, ClientError) as error:  # a speed-up only: never fail the snapshot over it
                logger.warning("an operation was not primed", extra={"operation": operation, "error": repr(error)})
    _prime_wire()


def _prime_wire() -> None:
    """What the first request sent on the wire sets up past `before-send`, without sending: the IDNA codec (the
    socket module encodes a host name with it, importing it on first use) and urllib3's copy of botocore's headers
    (the first copy walks every subclass of `Mapping` to tell that a view of them is not one)."""
    "priming".encode("idna")
    HeadersDict({"priming": "priming"}).copy()


def storage_calls(settings: Settings) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """`dynamodb_calls` on the deployment's tables (the webhook deliveries' is optional: "" where unset)."""
    tables = (
        settings.api_clients_table,
        settings.pending_table,
        settings.connections_table,
        settings.webhook_deliveries_table,
    )
    return dynamodb_calls(table for table in tables if table)
