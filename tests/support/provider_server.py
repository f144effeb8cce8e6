"""A real HTTP server on 127.0.0.1 that answers as Google's, Microsoft's or a generic provider's endpoints.

Tests script the token endpoint's next answers (status, body, delay, content type) and read back
every request it received. It is a real server: httpx in the code under test talks to it over TCP.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

GOOGLE_ISSUER = "https://accounts.google.com"
MICROSOFT_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
MICROSOFT_ISSUER = f"https://login.microsoftonline.com/{MICROSOFT_TENANT}/v2.0"
GOOGLE_CALENDAR = "https://www.googleapis.com/auth/calendar"


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> sent as is
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass
class Received:
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class ProviderServer:
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    _scripted: dict[str, deque[Answer | Callable[[Received], Answer]]] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=dict)
    revocation_status: int = 200

    def start(self) -> ProviderServer:
        self._server = make_server(self.host, 0, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def reset(self) -> None:
        self.received.clear()
        self._scripted.clear()
        self.userinfo = {}
        self.revocation_status = 200

    def script(self, path: str, *answers: Answer | Callable[[Received], Answer]) -> None:
        """The next answers of `path` (e.g. "/google/token"), in order; afterwards 500."""
        self._scripted.setdefault(path, deque()).extend(answers)

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def generic_issuer(self) -> str:
        return f"{self.base_url}/generic"

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        received = Received(
            request.path, dict(parse_qsl(request.get_data(as_text=True))), {k.lower(): v for k, v in request.headers}
        )
        self.received.append(received)
        if request.path == "/generic/.well-known/openid-configuration":
            issuer = self.generic_issuer()
            return _json(
                {
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "revocation_endpoint": f"{issuer}/revoke",
                    "userinfo_endpoint": f"{issuer}/userinfo",
                }
            )
        if request.path.endswith("/revoke"):
            return Response("", status=self.revocation_status)
        if request.path.endswith("/userinfo") or request.path.endswith("/me"):
            return _json(self.userinfo) if self.userinfo else _json({"error": "invalid_token"}, 401)
        queue = self._scripted.get(request.path)
        if not queue:
            return _json({"error": "server_error", "error_description": "nothing scripted"}, 500)
        answer = queue.popleft()
        if callable(answer):
            answer = answer(received)
        if answer.delay:
            time.sleep(answer.delay)  # the provider being slow is the behaviour under test
        body = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
        return Response(body, status=answer.status, content_type=answer.content_type)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def google_tokens(
    client_id: str,
    nonce: str | None,
    *,
    sub: str = "110169484474386276334",
    refresh: bool = True,
    scope: str = f"openid https://www.googleapis.com/auth/userinfo.email {GOOGLE_CALENDAR}",
) -> dict:
    body: dict[str, Any] = {
        "access_token": "ya29.a0-google-access-token",
        "expires_in": 3599,
        "scope": scope,
        "token_type": "Bearer",
        "id_token": unsigned_jwt(
            {
                "iss": GOOGLE_ISSUER,
                "aud": client_id,
                "sub": sub,
                "email": "person@example.com",
                "email_verified": True,
                "nonce": nonce,
                "iat": int(time.time()),
                "exp": int(time.time()) + 3600,
            }
        ),
    }
    if refresh:
        body["refresh_token"] = "1//0g-google-refresh-token"
    return body


def microsoft_tokens(
    client_id: str,
    nonce: str | None,
    *,
    oid: str = "00000000-0000-0000-66f3-3332eca7ea81",
    refresh: bool = True,
    scope: str = "Calendars.ReadWrite User.Read openid email profile",
) -> dict:
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 4872,
        "ext_expires_in": 4872,
        "access_token": "EwBwA8l6BAAU-microsoft-access-token",
        "id_token": unsigned_jwt(
            {
                "iss": MICROSOFT_ISSUER,
                "aud": client_id,
                "tid": MICROSOFT_TENANT,
                "oid": oid,
                "preferred_username": "person@contoso.com",
                "nonce": nonce,
                "ver": "2.0",
                "iat": int(time.time()),
                "exp": int(time.time()) + 3600,
            }
        ),
    }
    if refresh:
        body["refresh_token"] = "M.C123_BAY.-microsoft-refresh-token"
    return body
