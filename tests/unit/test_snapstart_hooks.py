"""The SnapStart hooks each handler registers, and what the after-restore hook renews (issue 16)."""

from __future__ import annotations

import random

from calendar_connect import deployment
from calendar_connect.records import TokenSet
from calendar_connect.token_cipher import KmsKeySource, TokenCipher
from tests.support.lambda_runtime import run_in_fresh_interpreter
from tests.support.snapstart import LocalKms, wrapped_key

_PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module("app")
from snapshot_restore_py import get_after_restore, get_before_snapshot
name = lambda hooks: sorted(f"{getattr(f, '__module__', '')}.{f.__qualname__}" for f, _, _ in hooks)
print(json.dumps({"before": name(get_before_snapshot()), "after": name(get_after_restore())}))
"""


def test_each_handler_module_registers_the_shared_hooks_and_the_initiate_its_routes_validation():
    # When each handler module is imported as Lambda imports it
    callback = run_in_fresh_interpreter("callback", _PROBE)
    initiate = run_in_fresh_interpreter("initiate", _PROBE)
    # Then both prime the deployment before the snapshot and renew it and the X-Ray socket after a restore
    shared = "calendar_connect.deployment.prime"
    renew = ["calendar_connect.deployment.after_restore", "calendar_connect.observability.renew_trace_emitter"]
    assert callback == {"before": [shared], "after": renew}
    # And the management API also compiles every route's validation and builds each dialect's models before it
    assert initiate["before"] == sorted(
        [
            shared,
            "aws_lambda_powertools.event_handler.api_gateway.ApiGatewayResolver.get_openapi_schema",
            "calendar_connect.dialects.teamup.api.prime",
            "calendar_connect.dialects.wix.api.prime",
        ]
    )
    assert initiate["after"] == callback["after"]


def test_after_restore_reseeds_the_random_module():
    # Given the random module's state as a snapshot would hold it
    random.seed(16)
    state = random.getstate()
    # When a copy is restored
    deployment.after_restore()
    # Then it draws from a state of its own
    assert random.getstate() != state


def test_after_restore_the_x_ray_sdk_sends_through_a_socket_of_its_own_to_the_same_daemon():
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

    from calendar_connect import observability

    # Given the X-Ray SDK's emitter as the snapshot holds it
    snapshot = xray_recorder.emitter
    snapshot_socket = snapshot._socket
    assert type(snapshot) is UDPEmitter
    try:
        # When a copy is restored
        observability.renew_trace_emitter()
        # Then it sends to the same daemon through a new socket, and the snapshot's is closed in this copy
        renewed = xray_recorder.emitter
        assert renewed is not snapshot and renewed._socket is not snapshot_socket
        assert (renewed.ip, renewed.port) == (snapshot.ip, snapshot.port)
        assert snapshot_socket.fileno() == -1
    finally:
        xray_recorder.emitter = UDPEmitter(f"{snapshot.ip}:{snapshot.port}")


def test_a_kms_data_key_made_before_the_snapshot_is_not_used_after_a_restore():
    # Given a cipher that already encrypted with a KMS data key
    cipher = TokenCipher(KmsKeySource("alias/tokens", client=LocalKms()))
    tokens = TokenSet(access_token="a", expires_at=0)
    before = cipher.encrypt("c1", tokens)
    # When it is renewed, as the after-restore hook renews it
    cipher.renew_data_key()
    after = cipher.encrypt("c1", tokens)
    # Then it encrypts with a new data key, and still decrypts what the old one sealed
    assert wrapped_key(after) != wrapped_key(before)
    assert cipher.decrypt("c1", before) == tokens == cipher.decrypt("c1", after)


def test_priming_makes_the_kms_client_but_no_data_key():
    # Given a KMS key source as deployed (no client yet)
    source = KmsKeySource("alias/tokens")
    # When it is primed before a snapshot
    source.prime()
    # Then its client exists (no call was made: no region's KMS is reachable here) and it holds no data key
    assert source._client is not None and source._current is None
    # And each of its operations was set up by a call answered in-process (aws_priming)
    for operation in ("GenerateDataKey", "Decrypt"):
        assert "input_shape" in vars(source._client.meta.service_model.operation_model(operation))


def test_the_secrets_manager_client_is_made_once_and_a_secret_fetched_only_when_first_needed(monkeypatch):
    from botocore.stub import Stubber

    from calendar_connect import credentials

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for table in ("PENDING_TABLE", "CONNECTIONS_TABLE", "API_CLIENTS_TABLE"):
        monkeypatch.setenv(table, table)
    secret_id = "arn:aws:secretsmanager:us-east-1:000000000000:secret:cc"
    deployment.reset()
    try:
        # Given the container's secrets reader, made as priming makes it (no secret read)
        credentials.prime(secret_id)
        source = credentials._secrets_provider()
        assert credentials._secrets_provider() is source
        # When a request first needs the client secrets (Secrets Manager answered at the client's edge)
        with Stubber(source.client) as stub:
            stub.add_response(
                "get_secret_value", {"SecretString": '{"google": "from-secrets"}'}, {"SecretId": secret_id}
            )
            stored = credentials.stored_credentials(secret_id)
            # Then it comes from that one call, the first after priming
            stub.assert_no_pending_responses()
        assert stored == {"google": "from-secrets"}
        # And a restore closes its pooled connections, keeping the reader and what it read
        credentials.drop_connections()
        assert credentials._secrets_provider() is source
    finally:
        deployment.reset()


def test_both_request_functions_snapshot_their_published_versions_and_are_invoked_through_the_alias():
    from local.template import functions, load_template

    template = load_template()
    function = template["Globals"]["Function"]
    # SnapStart for Python needs 3.12 or later, and applies to published versions only
    assert tuple(int(part) for part in function["Runtime"].removeprefix("python").split(".")) >= (3, 12)
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    # Every deploy publishes one; SAM points the HttpApi routes (and their permissions) at this alias
    assert function["AutoPublishAlias"]
    for name in functions(template):
        properties = template["Resources"][name]["Properties"]
        assert "AutoPublishAlias" not in properties, name
        # The request functions keep the snapshot; the schedule and stream functions, which no user waits on, opt out
        expected = None if name in {"InitiateFunction", "CallbackFunction"} else {"ApplyOn": "None"}
        assert properties.get("SnapStart") == expected, name
