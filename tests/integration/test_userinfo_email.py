"""The account's e-mail when the ID token carries none: OpenID providers may release it at userinfo only (OIDC Core
5.4). Against DynamoDB Local and the real provider server on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID
from tests.integration.test_callback import Attempt, callback, connected, start
from tests.support.lambda_runtime import invoke, json_body, load_event
from tests.support.provider_server import (
    GOOGLE_ISSUER,
    MICROSOFT_ISSUER,
    MICROSOFT_TENANT,
    Answer,
    google_tokens,
    microsoft_tokens,
    unsigned_jwt,
)

pytestmark = pytest.mark.usefixtures("example_client")
SUB = "110169484474386276334"


def tokens_without_email(attempt: Attempt) -> dict[str, Any]:
    """Google's token answer whose ID token names the account but carries no e-mail claim."""
    body = google_tokens(GOOGLE_CLIENT_ID, attempt.nonce)
    now = int(time.time())
    body["id_token"] = unsigned_jwt(
        {
            "iss": GOOGLE_ISSUER,
            "aud": GOOGLE_CLIENT_ID,
            "sub": SUB,
            "nonce": attempt.nonce,
            "iat": now,
            "exp": now + 3600,
        }
    )
    return body


def email_of(connection_id: str) -> str | None:
    event = load_event("connection-get.json")
    event["pathParameters"] = {"connectionId": connection_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/external-calendars/connections/{connection_id}"
    answer = invoke("InitiateFunction", event)
    assert answer["statusCode"] == 200, answer["body"]
    return json_body(answer)["connection"]["externalAccountEmail"]


def connect(provider_server: Any) -> str:
    attempt = start("google", schedule=f"schedule-userinfo-{time.monotonic_ns()}")
    provider_server.script("/google/token", Answer(200, tokens_without_email(attempt)))
    return connected(callback({"state": attempt.state, "code": "auth-code-userinfo"}), attempt.dialect)


def test_the_email_comes_from_userinfo_when_the_id_token_has_none(provider_server):
    # Given a provider whose userinfo endpoint releases the e-mail for the same subject
    provider_server.userinfo = {"sub": SUB, "email": "released@example.com", "email_verified": True}
    # When a person connects and the ID token carries no e-mail
    connection_id = connect(provider_server)
    # Then the connection's e-mail is userinfo's, fetched with the access token just granted
    assert email_of(connection_id) == "released@example.com"
    (request,) = provider_server.requests_to("/google/userinfo")
    assert request.headers["authorization"] == "Bearer ya29.a0-google-access-token"


def test_a_failing_userinfo_still_connects_without_an_email(provider_server):
    # Given userinfo answers 401 (the provider server's answer when nothing is set)
    provider_server.userinfo = {}
    # When a person connects; Then the connection is made, its e-mail empty
    connection_id = connect(provider_server)
    assert not email_of(connection_id)  # empty (reads answer "", as for any connection without one)
    assert provider_server.requests_to("/google/userinfo")


def test_userinfo_for_another_subject_is_not_used(provider_server):
    # OIDC Core 5.3.2: userinfo whose sub differs from the ID token's must not be used.
    provider_server.userinfo = {"sub": "someone-else", "email": "someone-else@example.com"}
    assert not email_of(connect(provider_server))


def test_an_email_in_the_id_token_needs_no_userinfo_call(provider_server):
    attempt = start("google", schedule="schedule-userinfo-skip")
    provider_server.script("/google/token", Answer(200, google_tokens(GOOGLE_CLIENT_ID, attempt.nonce)))
    connection_id = connected(callback({"state": attempt.state, "code": "c"}), attempt.dialect)
    assert email_of(connection_id) == "person@example.com"
    assert not provider_server.requests_to("/google/userinfo")


def test_microsoft_graph_me_gives_the_email_for_the_same_object_id(provider_server):
    # Given an ID token with no e-mail claim at all, and Graph's /me (no `sub`: it names the account by `id`)
    oid = "00000000-0000-0000-66f3-3332eca7ea81"
    attempt = start("microsoft", schedule="schedule-userinfo-graph")
    body = microsoft_tokens(MICROSOFT_CLIENT_ID, attempt.nonce, oid=oid)
    now = int(time.time())
    body["id_token"] = unsigned_jwt(
        {"iss": MICROSOFT_ISSUER, "aud": MICROSOFT_CLIENT_ID, "tid": MICROSOFT_TENANT, "oid": oid}
        | {"nonce": attempt.nonce, "ver": "2.0", "iat": now, "exp": now + 3600}
    )
    provider_server.script("/microsoft/token", Answer(200, body))
    provider_server.userinfo = {"id": oid, "mail": "person@contoso.com"}
    # When the person connects; Then the e-mail is Graph's
    connection_id = connected(callback({"state": attempt.state, "code": "c"}), attempt.dialect)
    assert email_of(connection_id) == "person@contoso.com"
    # And a /me about another object is not used
    other = start("microsoft", schedule="schedule-userinfo-graph-2")
    body = microsoft_tokens(MICROSOFT_CLIENT_ID, other.nonce, oid=oid)
    body["id_token"] = unsigned_jwt(
        {"iss": MICROSOFT_ISSUER, "aud": MICROSOFT_CLIENT_ID, "tid": MICROSOFT_TENANT, "oid": oid}
        | {"nonce": other.nonce, "ver": "2.0", "iat": now, "exp": now + 3600}
    )
    provider_server.script("/microsoft/token", Answer(200, body))
    provider_server.userinfo = {"id": "another-object", "mail": "intruder@contoso.com"}
    assert not email_of(connected(callback({"state": other.state, "code": "c2"}), other.dialect))
