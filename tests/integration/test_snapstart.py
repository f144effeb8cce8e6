"""SnapStart without AWS: a primed parent stands for the snapshot, its forked children for copies restored from it.

Each case runs in a fresh interpreter set up like a traced Lambda cold start, against this session's DynamoDB Local
and token server: the parent imports both handler modules (which register the hooks), runs the before-snapshot
hooks, then forks; every child runs the after-restore hooks and completes a whole connect flow.
"""

from __future__ import annotations

import contextlib
import json
import os
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
    sockets_before = _socket_count()
    take_snapshot()
    primed = {"sockets_opened": _socket_count() - sockets_before, "snapshot_key": snapshot_key.hex()}
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
    # And each copy redeemed its code with its own verifier (PKCE), at the real token endpoint
    sent = [r.form.get("code_verifier") for r in provider_server.requests_to("/google/token")]
    assert sent == [first["verifier"], second["verifier"]]


def test_without_the_after_restore_hooks_the_copies_would_share_the_snapshots_data_key(environment, provider_server):
    # Given the same primed parent, and copies that skip the after-restore hooks (what the hooks guard against)
    run = _run(environment, provider_server, run_hooks=False)
    # Then both copies encrypt with the data key the snapshot holds: the hooks are what makes them differ
    assert {copy["dataKey"] for copy in run["copies"]} == {run["snapshot_key"]}


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
