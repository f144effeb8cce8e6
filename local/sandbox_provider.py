"""The sandbox provider: a small OAuth 2.0 / OpenID Connect server for seeing every outcome offline.

Its consent page offers Approve, Deny and Approve without the calendar scope. The token endpoint
checks client authentication (client_secret_basic or client_secret_post), the redirect URI and the
PKCE S256 verifier, redeems a code once (a replayed code revokes what it issued, RFC 6749 4.1.2),
and rotates refresh tokens (a reused one revokes its whole family, RFC 9700 4.14.2). Revocation
(RFC 7009), userinfo, and an HS256 ID token signed with the client secret complete it.
Everything lives in memory; nothing it handles is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

CALENDAR_SCOPE = "calendar"
SUPPORTED_SCOPES = ("openid", "email", "profile", CALENDAR_SCOPE)
CODE_SECONDS = 60
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


@dataclass(frozen=True)
class SandboxClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class _AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    nonce: str | None
    code_challenge: str
    created: float


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    nonce: str | None
    code_challenge: str
    subject: str
    email: str
    expires: float
    redeemed: bool = False
    family: str | None = None  # the token family issued from it, revoked if the code is replayed


@dataclass
class _Family:
    """Every token descending from one authorization: revoked together."""

    client_id: str
    scopes: list[str]
    subject: str
    email: str
    refresh_token: str = ""
    access_tokens: set[str] = field(default_factory=set)
    retired_refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status,
        content_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


def _page(status: int, title: str, body_html: str) -> Response:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
        "button{margin:.3rem .3rem 0 0;padding:.5rem .9rem}label{display:block;margin:.8rem 0}"
        ".note{color:#666;font-size:.9rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return Response(
        document,
        status,
        content_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": _PAGE_CSP, "X-Frame-Options": "DENY"},
    )


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class SandboxProvider:
    """A WSGI application; `issuer` is the URL it is served on."""

    def __init__(self, issuer: str, clients: list[SandboxClient], access_token_seconds: int = 3600) -> None:
        self.issuer = issuer.rstrip("/")
        self.clients = {c.client_id: c for c in clients}
        self.access_token_seconds = access_token_seconds
        self._lock = threading.Lock()
        self._requests: dict[str, _AuthorizationRequest] = {}
        self._codes: dict[str, _Code] = {}
        self._families: dict[str, _Family] = {}
        self._by_refresh: dict[str, str] = {}  # digest of a refresh token (current or retired) -> family
        self._by_access: dict[str, tuple[str, float]] = {}  # digest of an access token -> (family, expiry)
        self._urls = Map(
            [
                Rule("/.well-known/openid-configuration", endpoint="metadata", methods=["GET"]),
                Rule("/authorize", endpoint="authorize", methods=["GET"]),
                Rule("/authorize/decision", endpoint="decision", methods=["POST"]),
                Rule("/token", endpoint="token", methods=["POST"]),
                Rule("/revoke", endpoint="revoke", methods=["POST"]),
                Rule("/userinfo", endpoint="userinfo", methods=["GET", "POST"]),
            ]
        )

    # --- WSGI ---------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, _ = self._urls.bind_to_environ(environ).match()
            response = getattr(self, f"_{endpoint}")(request)
        except MethodNotAllowed:
            response = _json(405, {"error": "invalid_request", "error_description": "method not allowed"})
        except NotFound:
            response = _json(404, {"error": "not_found"})
        except HTTPException as error:
            response = _json(error.code or 400, {"error": "invalid_request"})
        return response(environ, start_response)

    # --- discovery ----------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "authorization_response_iss_parameter_supported": True,
        }

    def _metadata(self, request: Request) -> Response:
        return _json(200, self.metadata(), {"Cache-Control": "public, max-age=60"})

    # --- authorization ------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response:
        args = request.args
        client = self.clients.get(args.get("client_id", ""))
        redirect_uri = args.get("redirect_uri", "")
        # RFC 6749 4.1.2.1: with an unknown client or redirect URI there is nowhere safe to redirect to.
        if client is None:
            return _page(400, "Unknown application", "<p>The client_id is not registered with this sandbox.</p>")
        if redirect_uri not in client.redirect_uris:
            return _page(400, "Unregistered redirect URI", "<p>The redirect_uri is not registered for this client.</p>")
        state = args.get("state")

        def refuse(error: str, description: str) -> Response:
            params = {"error": error, "error_description": description, "iss": self.issuer}
            if state is not None:
                params["state"] = state
            return Response(
                status=302, headers={"Location": _with_query(redirect_uri, params), "Cache-Control": "no-store"}
            )

        if args.get("response_type") != "code":
            return refuse("unsupported_response_type", "only response_type=code")
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        scopes = args.get("scope", "").split()
        unknown = [s for s in scopes if s not in SUPPORTED_SCOPES]
        if not scopes or unknown:
            return refuse("invalid_scope", "unknown or missing scope")
        request_id = secrets.token_urlsafe(24)
        with self._lock:
            self._requests[request_id] = _AuthorizationRequest(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                state=state,
                nonce=args.get("nonce"),
                code_challenge=args["code_challenge"],
                created=time.time(),
            )
        items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in scopes)
        body = (
            f"<p><strong>{html.escape(client.client_id)}</strong> asks to access your sandbox account:</p>"
            f"<ul>{items}</ul>"
            f'<form method="post" action="{html.escape(self.issuer)}/authorize/decision">'
            f'<input type="hidden" name="request" value="{html.escape(request_id)}">'
            '<label>Signed in as <input type="email" name="email" value="ada@sandbox.test" required></label>'
            '<button type="submit" name="decision" value="approve">Approve</button>'
            '<button type="submit" name="decision" value="deny">Deny</button>'
            '<button type="submit" name="decision" value="approve_without_calendar">'
            "Approve without the calendar scope</button>"
            "</form>"
            '<p class="note">This is the local sandbox provider: any address works, nothing leaves this machine.</p>'
        )
        return _page(200, "Sandbox Calendar: allow access?", body)

    def _decision(self, request: Request) -> Response:
        with self._lock:
            pending = self._requests.pop(request.form.get("request", ""), None)
        if pending is None or time.time() - pending.created > 600:
            return _page(400, "This consent page has expired", "<p>Start again from the application.</p>")
        decision = request.form.get("decision")
        params: dict[str, str] = {}
        if decision == "deny":
            params = {"error": "access_denied", "error_description": "The user denied access"}
        elif decision in ("approve", "approve_without_calendar"):
            email = request.form.get("email", "").strip().lower() or "ada@sandbox.test"
            scopes = pending.scopes
            if decision == "approve_without_calendar":
                scopes = [s for s in scopes if s != CALENDAR_SCOPE]
            code = secrets.token_urlsafe(32)
            with self._lock:
                self._codes[_digest(code)] = _Code(
                    client_id=pending.client_id,
                    redirect_uri=pending.redirect_uri,
                    scopes=scopes,
                    nonce=pending.nonce,
                    code_challenge=pending.code_challenge,
                    subject="sbx-" + _digest(email)[:20],
                    email=email,
                    expires=time.time() + CODE_SECONDS,
                )
            params = {"code": code}
        else:
            return _page(400, "Unknown decision", "<p>Choose Approve or Deny.</p>")
        if pending.state is not None:
            params["state"] = pending.state
        params["iss"] = self.issuer  # RFC 9207
        location = _with_query(pending.redirect_uri, params)
        return Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})

    # --- token endpoint -----------------------------------------------------------------------------

    def _client_from(self, request: Request) -> SandboxClient:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
                client_id, _, secret = decoded.partition(":")
                client_id, secret = unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
            except (ValueError, UnicodeDecodeError):
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            if "client_secret" in request.form:
                raise _OAuthError("invalid_request", "use one client authentication method")
        else:
            client_id, secret = request.form.get("client_id", ""), request.form.get("client_secret", "")
        client = self.clients.get(client_id)
        expected = client.client_secret if client else secrets.token_urlsafe(32)
        if client is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise _OAuthError("invalid_client", "client authentication failed", 401)
        return client

    def _token(self, request: Request) -> Response:
        try:
            client = self._client_from(request)
            grant_type = request.form.get("grant_type")
            if grant_type == "authorization_code":
                return _json(200, self._redeem_code(client, request.form))
            if grant_type == "refresh_token":
                return _json(200, self._refresh(client, request.form.get("refresh_token", "")))
            raise _OAuthError("unsupported_grant_type", "authorization_code or refresh_token")
        except _OAuthError as error:
            headers = {"WWW-Authenticate": 'Basic realm="sandbox"'} if error.status == 401 else {}
            return _json(error.status, {"error": error.error, "error_description": error.description}, headers)

    def _redeem_code(self, client: SandboxClient, form: Any) -> dict[str, Any]:
        with self._lock:
            code = self._codes.get(_digest(form.get("code", "")))
            if code is None or code.client_id != client.client_id:
                raise _OAuthError("invalid_grant", "unknown code")
            if code.redeemed:
                if code.family:  # RFC 6749 4.1.2: a replayed code revokes what it issued
                    self._revoke_family(code.family)
                raise _OAuthError("invalid_grant", "code already used")
            if time.time() > code.expires:
                raise _OAuthError("invalid_grant", "code expired")
            if form.get("redirect_uri") != code.redirect_uri:
                raise _OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
            verifier = form.get("code_verifier", "")
            if not verifier or not hmac.compare_digest(
                _b64url(hashlib.sha256(verifier.encode()).digest()), code.code_challenge
            ):
                raise _OAuthError("invalid_grant", "PKCE verification failed")
            code.redeemed = True
            family_id = secrets.token_hex(8)
            code.family = family_id
            family = _Family(client.client_id, code.scopes, code.subject, code.email)
            self._families[family_id] = family
            answer = self._issue(family_id, family)
        if "openid" in code.scopes:
            answer["id_token"] = self._id_token(client, code)
        return answer

    def _refresh(self, client: SandboxClient, refresh_token: str) -> dict[str, Any]:
        with self._lock:
            family_id = self._by_refresh.get(_digest(refresh_token))
            family = self._families.get(family_id or "")
            if family is None or family_id is None or family.client_id != client.client_id or family.revoked:
                raise _OAuthError("invalid_grant", "unknown or revoked refresh token")
            if _digest(refresh_token) in family.retired_refresh_tokens:
                self._revoke_family(family_id)  # a rotated token came back: assume it was stolen
                raise _OAuthError("invalid_grant", "refresh token reused")
            family.retired_refresh_tokens.add(_digest(refresh_token))
            return self._issue(family_id, family)

    def _issue(self, family_id: str, family: _Family) -> dict[str, Any]:
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        family.access_tokens.add(_digest(access_token))
        family.refresh_token = _digest(refresh_token)
        self._by_access[_digest(access_token)] = (family_id, time.time() + self.access_token_seconds)
        self._by_refresh[_digest(refresh_token)] = family_id
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.access_token_seconds,
            "refresh_token": refresh_token,
            "scope": " ".join(family.scopes),
        }

    def _id_token(self, client: SandboxClient, code: _Code) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": code.subject,
            "aud": client.client_id,
            "iat": now,
            "exp": now + 600,
            "email": code.email,
            "email_verified": True,
        }
        if code.nonce:
            claims["nonce"] = code.nonce
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = hmac.new(client.client_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def _revoke_family(self, family_id: str) -> None:
        family = self._families.get(family_id)
        if family is not None:
            family.revoked = True
            for digest in family.access_tokens:
                self._by_access.pop(digest, None)

    # --- revocation and userinfo ---------------------------------------------------------------------

    def _revoke(self, request: Request) -> Response:
        try:
            client = self._client_from(request)
        except _OAuthError as error:
            return _json(error.status, {"error": error.error}, {"WWW-Authenticate": 'Basic realm="sandbox"'})
        digest = _digest(request.form.get("token", ""))
        with self._lock:
            family_id = self._by_refresh.get(digest)
            if family_id and self._families[family_id].client_id == client.client_id:
                self._revoke_family(family_id)
            elif digest in self._by_access:
                owner = self._by_access[digest][0]
                if self._families[owner].client_id == client.client_id:
                    self._by_access.pop(digest, None)
        # RFC 7009 2.2: 200 whether or not the token was known.
        return Response(status=200, headers={"Cache-Control": "no-store"})

    def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        with self._lock:
            found = self._by_access.get(_digest(token)) if token else None
            family = self._families.get(found[0]) if found else None
            valid = found is not None and family is not None and not family.revoked and found[1] > time.time()
        if not valid or family is None:
            return _json(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        claims: dict[str, Any] = {"sub": family.subject}
        if "email" in family.scopes:
            claims.update(email=family.email, email_verified=True)
        return _json(200, claims)

    # --- for tests and the demo -----------------------------------------------------------------------

    def is_access_token_active(self, access_token: str) -> bool:
        with self._lock:
            found = self._by_access.get(_digest(access_token))
            return found is not None and not self._families[found[0]].revoked and found[1] > time.time()
