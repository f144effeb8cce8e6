"""SnapStart without AWS: a primed parent stands for the snapshot, its forked children for copies restored from it.

Each case runs in a fresh interpreter set up like a traced Lambda cold start, against this session's DynamoDB Local
and token server: the parent imports both handler modules (which register the hooks), runs the before-snapshot
hooks, then forks; every child runs the after-restore hooks and completes a whole connect flow.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.conftest import GOOGLE_CLIENT_ID
from tests.support.lambda_runtime import run_in_fresh_interpreter
from tests.support.provider_server import GOOGLE_CALENDAR, GOOGLE_ISSUER, Answer, Received, google_tokens

pytestmark = pytest.mark.usefixtures("example_client")
RETURN_URL = "https://booking.example.com/calendar/connected"


def _socket_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the directory listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def _connect_once(number: int) -> dict[str, Any]:
    """One connect flow in a restored copy: initiate (Wix, Google), then the provider's callback; what it made."""
    import sys

    from aws_xray_sdk.core import xray_recorder

    from calendar_connect import deployment
    from calendar_connect.secret_hashes import hash_secret
    from tests.support.lambda_runtime import invoke, load_event
    from tests.support.snapstart import wrapped_key

    modules_before = set(sys.modules)
    event = load_event("initiate-wix.json")
    event["body"] = json.dumps(
        {"providerId": "google", "scheduleId": f"schedule-restored-{number}", "redirectUrl": RETURN_URL}
    )
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 200, answer
    params = {k: v[0] for k, v in parse_qs(urlsplit(json.loads(answer["body"])["oauthUrl"]).query).items()}
    storage = deployment.current().storage
    pending = storage.pending.get(hash_secret(params["state"]))
    assert pending is not None
    # The code carries the nonce to the token server, whose ID token must echo it.
    query = {"state": params["state"], "code": params["nonce"], "scope": f"openid email {GOOGLE_CALENDAR}"}
    callback = load_event("callback-success.json")
    callback["queryStringParameters"] = {**query, "iss": GOOGLE_ISSUER}
    callback["rawQueryString"] = urlencode(callback["queryStringParameters"])
    answer = invoke("CallbackFunction", callback)
    location = answer.get("headers", {}).get("Location", "")
    connection_id = parse_qs(urlsplit(location).query).get("connectionId", [""])[0]
    record = storage.connections.get(connection_id) if connection_id else None
    return {
        "status": answer["statusCode"],
        "location": location,
        "state": params["state"],
        "verifier": pending.codeVerifier,
        "connectionId": connection_id,
        "dataKey": wrapped_key(record.tokens).hex() if record and record.tokens else None,
        "imported": sorted(set(sys.modules) - modules_before),
        "traceEmitter": id(xray_recorder.emitter),  # the same object in two processes has the same id after a fork
    }


def primed_parent(run_hooks: str) -> None:
    """The fresh interpreter's work (the snapshot): print what the snapshot held and what each restored copy did."""
    from calendar_connect import deployment
    from calendar_connect.records import TokenSet
    from calendar_connect.token_cipher import KmsKeySource, TokenCipher
    from tests.support.lambda_runtime import handler_module
    from tests.support.snapstart import LocalKms, restored_copies, take_snapshot, wrapped_key

    handler_module("InitiateFunction")
    handler_module("CallbackFunction")
    here = deployment.current()
    # In AWS the cipher's data key comes from KMS. The worst case: init already made one, so the snapshot holds it.
    here.__dict__["cipher"] = TokenCipher(KmsKeySource("alias/calendar-connect-tokens", client=LocalKms()))
    snapshot_key = wrapped_key(here.cipher.encrypt("made-at-init", TokenSet(access_token="a", expires_at=0)))
    from aws_xray_sdk.core import xray_recorder

    sockets_before = _socket_count()
    take_snapshot()
    primed = {
        "sockets_opened": _socket_count() - sockets_before,
        "snapshot_key": snapshot_key.hex(),
        "traceEmitter": id(xray_recorder.emitter),
    }
    copies = restored_copies(_connect_once, run_hooks=run_hooks == "hooks")
    print(json.dumps({**primed, "copies": copies}))


_SCRIPT = "import sys; from tests.integration.test_snapstart import primed_parent; primed_parent(sys.argv[2])"


def _run(environment: dict[str, str], provider_server: Any, run_hooks: bool = True) -> dict[str, Any]:
    def tokens(received: Received) -> Answer:
        code = received.form["code"]
        return Answer(body=google_tokens(GOOGLE_CLIENT_ID, code, sub=f"restored-{code[:12]}"))

    provider_server.script("/google/token", tokens, tokens)
    return run_in_fresh_interpreter(
        "callback",
        _SCRIPT,
        "hooks" if run_hooks else "no-hooks",
        env={**environment, "POWERTOOLS_TRACE_DISABLED": "false"},  # traced, as deployed
    )


def test_two_copies_of_one_primed_snapshot_make_their_own_secrets_and_both_connect(environment, provider_server):
    # Given a parent primed as before a snapshot, whose token cipher already holds a KMS data key
    # When two copies restored from it each run a whole connect flow
    run = _run(environment, provider_server)
    first, second = run["copies"]
    # Then both connect: a redirect to the return URL with a connectionId, tokens stored encrypted
    for copy in (first, second):
        assert copy["status"] == 302 and copy["location"].startswith(RETURN_URL), copy
        assert copy["connectionId"] and copy["dataKey"], copy
    # And nothing that must be unique is shared: states (the attempt ids), PKCE verifiers, data keys
    assert first["state"] != second["state"]
    assert first["verifier"] != second["verifier"]
    assert first["connectionId"] != second["connectionId"]
    assert len({first["dataKey"], second["dataKey"], run["snapshot_key"]}) == 3
    # And each sends its X-Ray subsegments through its own socket, not the snapshot's
    assert run["traceEmitter"] not in {first["traceEmitter"], second["traceEmitter"]}
    # And each copy redeemed its code with its own verifier (PKCE), at the real token endpoint
    sent = [r.form.get("code_verifier") for r in provider_server.requests_to("/google/token")]
    assert sent == [first["verifier"], second["verifier"]]


def test_without_the_after_restore_hooks_the_copies_would_share_the_snapshots_data_key_and_trace_socket(
    environment, provider_server
):
    # Given the same primed parent, and copies that skip the after-restore hooks (what the hooks guard against)
    run = _run(environment, provider_server, run_hooks=False)
    # Then both copies encrypt with the data key the snapshot holds: the hooks are what makes them differ
    assert {copy["dataKey"] for copy in run["copies"]} == {run["snapshot_key"]}
    assert {copy["traceEmitter"] for copy in run["copies"]} == {run["traceEmitter"]}


def test_priming_opens_no_connection_and_leaves_a_first_request_nothing_to_import(environment, provider_server):
    # Given a parent primed as before a snapshot
    run = _run(environment, provider_server)
    # Then the snapshot holds no socket beyond those the import made (no connection to DynamoDB or a provider)
    assert run["sockets_opened"] == 0
    # And a restored copy's first requests import nothing of ours or of the libraries: priming did it
    for copy in run["copies"]:
        ours = [
            m
            for m in copy["imported"]
            if m.split(".")[0]
            in {"calendar_connect", "pydantic", "httpx", "httpcore", "cryptography", "aws_lambda_powertools", "yaml"}
        ]
        assert ours == [], ours


class AwsEndpoint:
    """A real TCP listener standing for DynamoDB's and KMS's endpoints, and a UDP socket for the X-Ray daemon: what
    reaches each. Every HTTP request is answered 200 `{}`."""

    def __init__(self) -> None:
        self._tcp = socket.create_server(("127.0.0.1", 0))
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._tcp.getsockname()[1]}"
        self.daemon = f"127.0.0.1:{self._udp.getsockname()[1]}"
        self.connections = 0
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._tcp.accept()
            except OSError:  # closed: the test is over
                return
            self.connections += 1
            with connection:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536)
                head, _, body = received.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += connection.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                answer = b"{}"
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nConnection: close\r\n"
                    + b"Content-Length: %d\r\n\r\n" % len(answer)
                    + answer
                )

    def datagrams(self) -> list[bytes]:
        self._udp.setblocking(False)
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(self._udp.recv(65536))
        return received

    def __enter__(self) -> AwsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._tcp.close()
        self._thread.join(timeout=5)
        self._udp.close()


@pytest.fixture
def aws_endpoint() -> Iterator[AwsEndpoint]:
    with AwsEndpoint() as endpoint:
        yield endpoint


DYNAMODB_OPERATIONS = ("GetItem", "PutItem", "UpdateItem", "Query")
KMS_OPERATIONS = ("GenerateDataKey", "Decrypt")


def primed_then_one_call() -> None:
    """The fresh interpreter's work: the snapshot's priming, what it set up, then one real call (after priming, before
    any restore) that must reach the endpoint, signed with the client's own credentials."""
    import abc

    from calendar_connect import aws_priming, deployment
    from tests.support.lambda_runtime import handler_module
    from tests.support.snapstart import take_snapshot

    handler_module("InitiateFunction")
    handler_module("CallbackFunction")
    # The ABC cache token after each priming of calls: an ABC registered later empties the isinstance caches they filled
    tokens = {}
    prime = aws_priming.prime

    def prime_and_note(client: Any, calls: Any) -> None:
        prime(client, calls)
        tokens[client.meta.service_model.service_name] = abc.get_cache_token()

    aws_priming.prime = prime_and_note
    take_snapshot()
    aws_priming.prime = prime
    here = deployment.current()
    kms = here.cipher._keys._kms()  # the token cipher's own KMS client (TOKEN_KMS_KEY_ID is set)

    def set_up(client: Any, operation: str) -> bool:
        # A cached property is in the instance's __dict__ once built: the shapes a first call resolves.
        model = vars(client.meta.service_model.operation_model(operation))
        return "input_shape" in model and "output_shape" in model

    primed = {f"dynamodb {op}": set_up(here.storage.client, op) for op in DYNAMODB_OPERATIONS}
    primed |= {f"kms {op}": set_up(kms, op) for op in KMS_OPERATIONS}
    here.storage.client.get_item(TableName="after-priming", Key={"clientId": {"S": "after-priming"}})
    caches_kept = tokens == {"dynamodb": abc.get_cache_token(), "kms": abc.get_cache_token()}
    print(json.dumps({"primed": primed, "kms_endpoint": kms.meta.endpoint_url, "caches_kept": caches_kept}))


def test_priming_sets_up_every_operation_and_sends_nothing(environment, aws_endpoint):
    # Given DynamoDB's and KMS's endpoints and the X-Ray daemon on listeners of this test, and the KMS cipher of AWS
    env = {
        **environment,
        "DYNAMODB_ENDPOINT": aws_endpoint.url,
        "AWS_ENDPOINT_URL_KMS": aws_endpoint.url,
        "TOKEN_KMS_KEY_ID": "alias/calendar-connect-tokens",
        "AWS_XRAY_DAEMON_ADDRESS": aws_endpoint.daemon,
        "POWERTOOLS_TRACE_DISABLED": "false",  # traced, as deployed
    }
    # When a fresh interpreter primes as before a snapshot, then makes one call of its own
    script = "from tests.integration.test_snapstart import primed_then_one_call; primed_then_one_call()"
    run = run_in_fresh_interpreter("callback", script, env=env)
    # Then every DynamoDB and KMS operation the functions make was set up before the snapshot
    assert run["kms_endpoint"] == aws_endpoint.url
    assert run["primed"] == {name: True for name in run["primed"]} and len(run["primed"]) == 6, run["primed"]
    # And nothing after the DynamoDB calls' priming emptied the isinstance caches they filled (no ABC registered since)
    assert run["caches_kept"]
    # And only the call made after priming reached the endpoint: one connection, signed with the client's credentials
    assert aws_endpoint.connections == 1
    [request] = aws_endpoint.requests
    assert b"after-priming" in request
    assert f"Credential={environment['AWS_ACCESS_KEY_ID']}/".encode() in request
    # And no X-Ray subsegment was sent for priming: the daemon got only the traced call's
    datagrams = aws_endpoint.datagrams()
    assert datagrams and all(b"after-priming" in datagram for datagram in datagrams), datagrams
