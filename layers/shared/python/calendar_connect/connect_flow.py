"""The connect flow, knowing no dialect: start an attempt, bind it to a browser, finish it.

The attempt's dialect is an opaque label its edge chose; the callback edge words the outcome in it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from . import deadline as invocation
from .deployment import Deployment
from .errors import AuthorizationFailure, FailedPrecondition, ReturnUrlNotAllowed, StorageUnavailable, Unavailable
from .http_answers import ANOTHER_BROWSER, STORAGE_DOWN, UNKNOWN_ATTEMPT, Page
from .oauth_client import (
    ProviderCallFailed,
    ProviderConfigurationError,
    exchange_code,
    fetch_userinfo,
    id_token_claims,
    revoke,
    token_set_fields,
    with_discovered_endpoints,
)
from .observability import (
    AUTHORIZATION_FINISHED,
    AUTHORIZATION_STARTED,
    START_LINK_EXPIRED,
    START_LINK_OPENED,
    count,
    follow_attempt,
    follow_connection,
    logger,
)
from .providers import Provider
from .records import ApiClient, ConnectionRecord, ConnectionStatus, PendingAuthorization, TokenSet
from .return_urls import is_allowed, validate_return_url
from .routes import CALLBACK, START
from .secret_hashes import hash_secret
from .timestamps import iso

_CONNECTION_NAMESPACE = uuid.UUID("6f1d8a52-4c1e-4a7b-9d53-1f0c2b7e9a10")
_OUTCOME_WAIT_SECONDS = 15.0


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _query_pieces(url: str, items: tuple[tuple[str, str | None], ...]) -> tuple[str, tuple[str | None, ...]]:
    """`url` without its query, and the query's pieces in order: its own parameters, then `items`, each encoded;
    None for an item whose value is None (a place kept for a value given later)."""
    parts = urlsplit(url)
    pieces: list[str | None] = [urlencode([pair], quote_via=quote) for pair in parse_qsl(parts.query, True)]
    pieces += [None if value is None else urlencode([(key, value)], quote_via=quote) for key, value in items]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), tuple(pieces)


def _with_query(url: str, params: dict[str, str]) -> str:
    base, pieces = _query_pieces(url, tuple(params.items()))
    query = "&".join(piece for piece in pieces if piece is not None)
    return f"{base}?{query}" if query else base


def binding_cookie_name(state_hash: str) -> str:
    # One cookie per attempt, so several attempts can run in one browser.
    return f"cc_bind_{state_hash[:16]}"


@dataclass(frozen=True)
class StartedAuthorization:
    url: str
    timeout_seconds: int
    expires_at: int


def start_authorization(
    deployment: Deployment,
    client: ApiClient,
    provider: Provider,
    schedule_id: str,
    return_url: str,
    dialect: str,
    base_url: str,
    *,
    now: int | None = None,
) -> StartedAuthorization:
    """Record a pending authorization and answer the URL to send the person's browser to.

    `provider` is the deployment's entry the edge found, `return_url` one the edge checked (validate_return_url,
    naming its own field), `dialect` the edge's label, kept for the callback. A return URL outside the client's
    prefixes raises ReturnUrlNotAllowed, which the edge answers naming its field; storage down, StorageUnavailable.
    """
    return_url = validate_return_url(return_url)  # normalised (again, at no cost): checked, stored, redirected to
    if not provider.connects_by_oauth:
        raise FailedPrecondition(
            f"Provider {provider.id} does not connect by OAuth", application_code="NOT_SUPPORTED_BY_PROVIDER"
        )
    found = deployment.credentials(provider)
    if found is None:
        raise FailedPrecondition(
            f"Provider {provider.id} has no OAuth client in this deployment", application_code="PROVIDER_NOT_CONFIGURED"
        )
    if found.client_id != provider.client_id:  # the client this deployment configures for it
        provider = provider.model_copy(update={"client_id": found.client_id})
    if not is_allowed(return_url, client.allowedReturnUrlPrefixes):
        raise ReturnUrlNotAllowed()
    try:
        provider = with_discovered_endpoints(provider)
    except ProviderConfigurationError:
        raise Unavailable("The provider's metadata could not be fetched; try again shortly") from None

    now = int(time.time()) if now is None else now
    state = secrets.token_urlsafe(32)  # 256 random bits
    verifier = secrets.token_urlsafe(64) if provider.pkce else None
    nonce = secrets.token_urlsafe(16) if provider.uses_openid else None
    redirect_uri = base_url.rstrip("/") + CALLBACK
    expires_at = now + provider.timeout_seconds
    binding = deployment.settings.browser_binding
    state_hash = hash_secret(state)
    follow_attempt(state_hash)
    pending = PendingAuthorization(
        stateHash=state_hash,
        providerId=provider.id,
        clientId=client.clientId,
        scheduleId=schedule_id,
        returnUrl=return_url,
        dialect=dialect,
        redirectUri=redirect_uri,
        codeVerifier=verifier,
        nonce=nonce,
        createdAt=now,
        expiresAt=expires_at,
        requiresBrowserBinding=binding,
    )
    deployment.storage.pending.put_new(pending)
    if binding:
        url = _with_query(base_url.rstrip("/") + START, {"attempt": state})
    else:
        url = authorization_url(provider, pending, state)
    logger.info(
        "authorization started", extra={"providerId": provider.id, "clientId": client.clientId, "dialect": dialect}
    )
    count(AUTHORIZATION_STARTED, known_providers=deployment.providers, provider=provider.id, dialect=dialect)
    return StartedAuthorization(url=url, timeout_seconds=provider.timeout_seconds, expires_at=expires_at)


# Per attempt only these change; the rest of an authorization URL is encoded once per container.
_PER_ATTEMPT = frozenset({"state", "code_challenge", "nonce"})


# The pieces of one provider's URLs without their per-attempt values, which never enter the cache.
_query_template = lru_cache(maxsize=64)(_query_pieces)


def authorization_params(provider: Provider, pending: PendingAuthorization, state: str) -> dict[str, str]:
    """The authorization request's parameters, in order; a provider entry's own parameters last (or in place)."""
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": pending.redirectUri,
        "scope": " ".join(provider.scopes),
        "state": state,
    }
    if pending.codeVerifier:
        params.update(code_challenge=_s256(pending.codeVerifier), code_challenge_method="S256")
    if pending.nonce:
        params["nonce"] = pending.nonce
    params.update(provider.authorization_params)
    return params


def authorization_url(provider: Provider, pending: PendingAuthorization, state: str) -> str:
    """The provider's authorization URL; built from the stored attempt, which never holds the state itself."""
    params = authorization_params(provider, pending, state)
    assert provider.authorization_endpoint
    base, pieces = _query_template(
        provider.authorization_endpoint,
        tuple((key, None if key in _PER_ATTEMPT else value) for key, value in params.items()),
    )
    per_attempt = iter(urlencode([(key, params[key])], quote_via=quote) for key in params if key in _PER_ATTEMPT)
    return base + "?" + "&".join(piece if piece is not None else next(per_attempt) for piece in pieces)


# --- the browser's side -------------------------------------------------------------------------------


@dataclass
class Redirect:
    """To the provider."""

    location: str
    cookies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReturnToWebsite:
    """Back to the attempt's return URL with its outcome, which the callback edge words in the attempt's dialect."""

    return_url: str
    dialect: str
    outcome: dict[str, str]  # {"connectionId"} or {"error", "reason"}


def _back(pending: PendingAuthorization, outcome: dict[str, str]) -> ReturnToWebsite:
    return ReturnToWebsite(pending.returnUrl, pending.dialect, outcome)


def _failure(error: str, reason: str) -> dict[str, str]:
    return {"error": error, "reason": reason}


Answer = Redirect | ReturnToWebsite | Page


def _live_attempt(deployment: Deployment, state_hash: str, now: int) -> PendingAuthorization | ReturnToWebsite | Page:
    """The attempt, or the answer for one that cannot go on: unknown (no trusted target), expired, storage down.

    Expiry is checked here, on every read: DynamoDB's TTL deletes items only within about two days.
    """
    try:
        pending = deployment.storage.pending.get(state_hash)
    except StorageUnavailable:
        return STORAGE_DOWN
    if pending is None:
        return UNKNOWN_ATTEMPT
    if now >= pending.expiresAt:
        logger.info("start link expired", extra={"providerId": pending.providerId})
        count(START_LINK_EXPIRED, known_providers=deployment.providers, provider=pending.providerId)
        return _back(pending, _failure("internal", "expired"))
    return pending


def _another_browser(pending: PendingAuthorization, presented: str | None, *, bound_only: bool) -> Page | None:
    """The page for a browser that may not use the attempt: where only the bound browser may (`bound_only`), one
    that did not present the cookie whose hash the attempt keeps. None: this browser may go on."""
    if not bound_only or (
        pending.browserBindingHash
        and presented
        and hmac.compare_digest(hash_secret(presented), pending.browserBindingHash)
    ):
        return None
    return ANOTHER_BROWSER


def _binding_cookie(name: str, token: str, pending: PendingAuthorization, now: int, secure: bool) -> str:
    # Path: the directory of both browser endpoints, so Back or reload on the start hop presents it too.
    path = urlsplit(pending.redirectUri).path.rsplit("/", 1)[0] + "/"
    return f"{name}={token}; Max-Age={max(pending.expiresAt - now, 1)}; Path={path}; HttpOnly; SameSite=Lax" + (
        "; Secure" if secure else ""
    )


def open_attempt(
    deployment: Deployment, attempt: str | None, cookies: dict[str, str], secure_cookie: bool, now: int | None = None
) -> Answer:
    """The optional hop: bind the attempt to this browser, then send it to the provider.

    An unopened link is a bearer link, so it opens only within START_LINK_SECONDS of initiate; once bound,
    the browser that bound it may come back (Back, reload) until the attempt's own expiry."""
    now = int(time.time()) if now is None else now
    if not attempt:
        return UNKNOWN_ATTEMPT
    state_hash = hash_secret(attempt)
    follow_attempt(state_hash)
    pending = _live_attempt(deployment, state_hash, now)
    if not isinstance(pending, PendingAuthorization):
        return pending
    name = binding_cookie_name(state_hash)
    if pending.browserBindingHash is not None:  # bound: only that browser goes on, whatever the attempt required
        if refused := _another_browser(pending, cookies.get(name), bound_only=True):
            return refused
        if pending.status != "PENDING":  # finished (or finishing) in this browser: its outcome again
            return _back(pending, _replayed_outcome(deployment, pending, now))
        return _to_provider(deployment, pending, attempt, [])
    if now >= pending.createdAt + deployment.settings.start_link_seconds:
        return _back(pending, _failure("internal", "expired"))
    token = secrets.token_urlsafe(32)
    try:
        bound = deployment.storage.pending.bind_browser(state_hash, hash_secret(token), now)
    except StorageUnavailable:
        return STORAGE_DOWN
    if not bound:  # another browser bound it since the read, or it was used without the hop
        return ANOTHER_BROWSER
    logger.info("start link opened", extra={"providerId": pending.providerId})
    count(START_LINK_OPENED, known_providers=deployment.providers, provider=pending.providerId)
    return _to_provider(deployment, pending, attempt, [_binding_cookie(name, token, pending, now, secure_cookie)])


def _to_provider(deployment: Deployment, pending: PendingAuthorization, state: str, cookies: list[str]) -> Answer:
    try:
        provider = deployment.provider(pending.providerId)
        if provider is None:
            raise ProviderConfigurationError(pending.providerId)
        provider = with_discovered_endpoints(provider)
    except ProviderConfigurationError:
        return _back(pending, _failure("internal", "provider_error"))
    return Redirect(authorization_url(provider, pending, state), cookies=cookies)


def finish_authorization(
    deployment: Deployment, params: dict[str, str], cookies: dict[str, str], now: int | None = None
) -> Answer:
    """The provider's redirect back: consume the state once, connect, and send the browser home."""
    now = int(time.time()) if now is None else now
    state = params.get("state")
    if not state:
        return UNKNOWN_ATTEMPT
    state_hash = hash_secret(state)
    follow_attempt(state_hash)
    store = deployment.storage.pending
    presented = cookies.get(binding_cookie_name(state_hash))
    # No read first: the one conditional UpdateItem answers the attempt, claimed or not (as _live_attempt would);
    # its condition includes the browser binding, so a callback from another browser leaves the attempt unused.
    try:
        claim = store.claim(state_hash, now, hash_secret(presented) if presented else None)
    except StorageUnavailable:
        return STORAGE_DOWN  # nothing was read, so there is no trusted return URL to send the browser to
    pending = claim.pending
    if pending is None:
        return UNKNOWN_ATTEMPT
    if now >= pending.expiresAt:  # before anything else; DynamoDB's TTL deletes only within about two days
        outcome = _failure("internal", "expired")
        _finished(deployment, pending, outcome, now)
        return _back(pending, outcome)
    if refused := _another_browser(pending, presented, bound_only=pending.requiresBrowserBinding):
        return refused  # the code is not redeemed; the bound browser can still finish
    if not claim.claimed:  # already used (CONSUMED or DONE): the first callback's outcome, to the bound browser
        return _back(pending, _replayed_outcome(deployment, pending, now))

    try:
        _require_active_client(deployment, pending.clientId)
        outcome = {"connectionId": _connect(deployment, pending, params, now)}
    except AuthorizationFailure as failure:
        outcome = _failure(failure.error, failure.reason)
    _finished(deployment, pending, outcome, now)
    try:
        store.record_outcome(state_hash, outcome)
    except StorageUnavailable:
        logger.warning("outcome not recorded; a repeated callback will not replay it")
    return _back(pending, outcome)


def _require_active_client(deployment: Deployment, client_id: str) -> None:
    """Before any code is redeemed: an attempt whose API client was revoked since initiate obtains no tokens."""
    try:
        active = deployment.storage.api_clients.is_active(client_id)
    except StorageUnavailable:
        raise AuthorizationFailure("internal", "storage_unavailable") from None
    if not active:
        raise AuthorizationFailure("internal", "client_revoked")


def _finished(deployment: Deployment, pending: PendingAuthorization, outcome: dict[str, str], now: int) -> None:
    """An attempt's end, once per outcome: its log line (`make run` prints a summary of it) and its count."""
    if "connectionId" in outcome:
        follow_connection(outcome["connectionId"])
    ended, reason = outcome.get("error", "connected"), outcome.get("reason", "none")
    logger.info(
        "authorization finished",
        extra={
            "providerId": pending.providerId,
            "dialect": pending.dialect,
            "outcome": ended,
            "reason": reason,
            "attemptSeconds": now - pending.createdAt,
        },
    )
    count(
        AUTHORIZATION_FINISHED,
        known_providers=deployment.providers,
        provider=pending.providerId,
        dialect=pending.dialect,
        outcome=ended,
        reason=reason,
    )


def _replayed_outcome(deployment: Deployment, pending: PendingAuthorization, now: int) -> dict[str, str]:
    """A repeated callback: the first outcome, waiting briefly while the first callback is still finishing."""
    deadline = time.monotonic() + _OUTCOME_WAIT_SECONDS
    delay = 0.05
    current: PendingAuthorization | None = pending
    while current is not None and current.status != "DONE" and time.monotonic() < deadline:
        if not invocation.sleep(delay):
            break  # the invocation's own deadline comes first
        delay = min(delay * 2, 0.5)
        try:
            current = deployment.storage.pending.get(pending.stateHash)
        except StorageUnavailable:
            return _failure("internal", "storage_unavailable")
    if current is not None and current.status == "DONE" and current.outcome:
        return current.outcome
    return _failure("internal", "provider_error")


def connection_id_for(client_id: str, provider_id: str, schedule_id: str, account_id: str) -> str:
    """Deterministic: reconnecting the same account to the same schedule lands on the same connection."""
    return str(uuid.uuid5(_CONNECTION_NAMESPACE, "\x1f".join((client_id, provider_id, schedule_id, account_id))))


def _connect(deployment: Deployment, pending: PendingAuthorization, params: dict[str, str], now: int) -> str:
    try:
        provider = deployment.provider(pending.providerId)
    except ProviderConfigurationError:
        logger.exception("provider credentials unreadable")
        provider = None
    if provider is None:
        raise AuthorizationFailure("internal", "provider_error")
    if params.get("error"):
        raise provider.map_authorization_error(params["error"], params.get("error_description", ""))
    if "iss" in params and not provider.issuer_matches(params["iss"]):
        raise AuthorizationFailure("internal", "issuer_mismatch")
    code = params.get("code")
    if not code:
        raise AuthorizationFailure("internal", "provider_error")
    try:
        provider = with_discovered_endpoints(provider)
        secret = deployment.client_secret(provider)
    except ProviderConfigurationError:
        logger.exception("provider misconfigured")
        raise AuthorizationFailure("internal", "provider_error") from None
    try:
        body = exchange_code(provider, secret, code, pending.redirectUri, pending.codeVerifier)
        tokens = TokenSet(**token_set_fields(body, now))
    except ProviderCallFailed as error:
        logger.warning("token exchange failed", extra={"cause": error.reason, "oauthError": error.oauth_error})
        raise AuthorizationFailure("internal", "token_exchange_failed") from None

    granted_scope = body.get("scope") if isinstance(body.get("scope"), str) else params.get("scope")
    granted = provider.granted_scopes(granted_scope) if granted_scope is not None else list(provider.scopes)
    if provider.missing_required_scopes(granted):
        _revoke_quietly(provider, secret, tokens)
        raise AuthorizationFailure("unsupported", "scope_not_granted")
    if not tokens.refresh_token:
        _revoke_quietly(provider, secret, tokens)
        raise AuthorizationFailure("internal", "no_refresh_token")

    account_id, email = _identify(provider, body, tokens, pending.nonce)
    connection_id = connection_id_for(pending.clientId, provider.id, pending.scheduleId, account_id)
    stamp = iso(now)
    record = ConnectionRecord(
        connectionId=connection_id,
        clientId=pending.clientId,
        providerId=provider.id,
        calendarType=provider.calendar_type,
        scheduleId=pending.scheduleId,
        externalAccountId=account_id,
        externalAccountEmail=email,
        scopesGranted=granted,
        status=ConnectionStatus.CONNECTED,
        createdAt=stamp,
        updatedAt=stamp,
        tokens=deployment.cipher.encrypt(connection_id, tokens),
        accessTokenExpiresAt=tokens.expires_at,
        keepAliveDueAt=provider.next_keepalive_at(now),
    )
    try:
        deployment.storage.connections.upsert_connected(record)
    except StorageUnavailable:
        # Tokens we cannot keep must not stay live at the provider, granted and unreachable.
        _revoke_quietly(provider, secret, tokens)
        raise AuthorizationFailure("internal", "storage_unavailable") from None
    return connection_id


def _identify(provider: Provider, body: dict, tokens: TokenSet, nonce: str | None) -> tuple[str, str | None]:
    """The external account: ID token claims when there is one, else the userinfo endpoint.

    An ID token without an e-mail claim leaves the e-mail to userinfo (OIDC Core 5.4), best effort.
    """
    id_token = body.get("id_token")
    from_id_token = isinstance(id_token, str) and bool(id_token)
    try:
        if isinstance(id_token, str) and id_token:
            claims = id_token_claims(id_token, provider, nonce)
            id_fields = provider.account_id_claims
        else:
            claims = fetch_userinfo(provider, tokens.access_token)
            id_fields = provider.userinfo_account_id_fields
    except ProviderCallFailed as error:
        logger.warning("account identification failed", extra={"cause": error.reason})
        raise AuthorizationFailure("internal", "provider_error") from None
    parts = [claims.get(name) for name in id_fields]
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise AuthorizationFailure("internal", "provider_error")
    email = _email(provider, claims)
    if email is None and from_id_token and provider.userinfo_endpoint:
        try:
            userinfo = fetch_userinfo(provider, tokens.access_token)
        except ProviderCallFailed as error:
            logger.info("no e-mail from userinfo", extra={"cause": error.reason})
        else:
            if _same_account(provider, claims, userinfo):
                email = _email(provider, userinfo)
    return ":".join(str(p) for p in parts), email


def _same_account(provider: Provider, id_claims: dict, userinfo: dict) -> bool:
    """OIDC Core 5.3.2: userinfo about another subject than the ID token's must not be used. An OpenID userinfo
    answer has `sub`; another (Microsoft Graph's /me) names the account by its own fields, found in the ID token."""
    if "sub" in userinfo:
        return userinfo["sub"] == id_claims.get("sub")
    own = [userinfo.get(name) for name in provider.userinfo_account_id_fields]
    known = {id_claims.get(name) for name in provider.account_id_claims}
    return bool(own) and all(isinstance(v, str) and v and v in known for v in own)


def _email(provider: Provider, claims: dict) -> str | None:
    return next((claims[n] for n in provider.email_claims if isinstance(claims.get(n), str) and claims[n]), None)


def _revoke_quietly(provider: Provider, secret: str | None, tokens: TokenSet) -> None:
    for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
        if token and revoke(provider, secret, token, hint) is not False:
            return
