"""The connect flow, knowing no dialect: start an attempt, bind it to a browser, finish it.

The attempt's dialect is an opaque label its edge chose; the callback edge words the outcome in it."""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import deadline as invocation
from .deployment import Deployment
from .errors import AuthorizationFailure, ReturnUrlNotAllowed, StorageUnavailable
from .http_answers import ANOTHER_BROWSER, STORAGE_DOWN, UNKNOWN_ATTEMPT, Page
from .oauth_client import ProviderCallFailed
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
from .provider_session import ProviderSession, ProviderUnusable, Unusable, with_query
from .providers import Provider
from .records import ApiClient, ConnectionRecord, ConnectionStatus, PendingAuthorization, TokenSet
from .return_urls import is_allowed, validate_return_url
from .routes import CALLBACK, START
from .secret_hashes import hash_secret
from .timestamps import iso

_CONNECTION_NAMESPACE = uuid.UUID("6f1d8a52-4c1e-4a7b-9d53-1f0c2b7e9a10")
_OUTCOME_WAIT_SECONDS = 15.0


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
    prefixes raises ReturnUrlNotAllowed, which the edge answers naming its field; a provider this deployment cannot
    use, ProviderUnusable; storage down, StorageUnavailable.
    """
    return_url = validate_return_url(return_url)  # normalised (again, at no cost): checked, stored, redirected to
    entry, configured = deployment.oauth_client(provider.id)  # no network call: a refused return URL makes none
    if not is_allowed(return_url, client.allowedReturnUrlPrefixes):
        raise ReturnUrlNotAllowed()
    session = deployment.session(entry, configured)
    provider = session.provider

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
        url = with_query(base_url.rstrip("/") + START, {"attempt": state})
    else:
        url = session.authorization_url(pending, state)
    logger.info(
        "authorization started", extra={"providerId": provider.id, "clientId": client.clientId, "dialect": dialect}
    )
    count(AUTHORIZATION_STARTED, known_providers=deployment.providers, provider=provider.id, dialect=dialect)
    return StartedAuthorization(url=url, timeout_seconds=provider.timeout_seconds, expires_at=expires_at)


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
        url = deployment.oauth(pending.providerId).authorization_url(pending, state)
    except ProviderUnusable as unusable:
        logger.warning("provider unusable", extra={"providerId": pending.providerId, "reason": unusable.reason.name})
        return _back(pending, _failure("internal", "provider_error"))
    return Redirect(url, cookies=cookies)


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


# What keeps a known provider from redeeming the code is told after the provider's own answer: a denial still says so.
_NOTICED_AT_EXCHANGE = frozenset({Unusable.NOT_OAUTH, Unusable.NOT_CONFIGURED, Unusable.DISCOVERY_FAILED})


def _session_and_code(
    deployment: Deployment, pending: PendingAuthorization, params: dict[str, str]
) -> tuple[ProviderSession, str]:
    """The provider's session and the redirect's code, checked in this order: an unknown provider or unreadable
    credentials; the provider's `error` and `iss`; a missing code; then whatever else keeps the code unredeemed."""
    try:
        session = deployment.oauth(pending.providerId)
    except ProviderUnusable as unusable:
        logger.warning("provider unusable", extra={"providerId": pending.providerId, "reason": unusable.reason.name})
        if unusable.provider is not None and unusable.reason in _NOTICED_AT_EXCHANGE:
            _code(unusable.provider, params)
        raise AuthorizationFailure("internal", "provider_error") from None
    return session, _code(session.provider, params)


def _code(provider: Provider, params: dict[str, str]) -> str:
    """The code the provider's redirect carries, or the failure it says instead (RFC 6749 4.1.2.1, RFC 9207)."""
    if params.get("error"):
        raise provider.map_authorization_error(params["error"], params.get("error_description", ""))
    if "iss" in params and not provider.issuer_matches(params["iss"]):
        raise AuthorizationFailure("internal", "issuer_mismatch")
    code = params.get("code")
    if not code:
        raise AuthorizationFailure("internal", "provider_error")
    return code


def connected_record(
    deployment: Deployment,
    connection_id: str,
    client_id: str,
    provider: Provider,
    schedule_id: str,
    account: tuple[str, str | None],
    scopes: list[str],
    tokens: TokenSet,
    now: int,
    keepalive_due_at: int | None = None,
) -> ConnectionRecord:
    """A CONNECTED connection as the callback stores it: `account` its id and e-mail, the tokens sealed to the
    connection's id, the next keep-alive (default: the provider's) due from `now`."""
    account_id, email = account
    stamp = iso(now)
    return ConnectionRecord(
        connectionId=connection_id,
        clientId=client_id,
        providerId=provider.id,
        tokens=deployment.cipher.encrypt(connection_id, tokens),  # sealed to the connection's id
        calendarType=provider.calendar_type,
        scheduleId=schedule_id,
        externalAccountId=account_id,
        externalAccountEmail=email,
        keepAliveDueAt=provider.next_keepalive_at(now) if keepalive_due_at is None else keepalive_due_at,
        scopesGranted=scopes,
        status=ConnectionStatus.CONNECTED,
        createdAt=stamp,
        updatedAt=stamp,
        accessTokenExpiresAt=tokens.expires_at,
    )


def _connect(deployment: Deployment, pending: PendingAuthorization, params: dict[str, str], now: int) -> str:
    session, code = _session_and_code(deployment, pending, params)
    provider = session.provider
    try:
        tokens, answer = session.exchange_code(code, pending, now)
    except ProviderCallFailed as error:
        logger.warning("token exchange failed", extra={"cause": error.reason, "oauthError": error.oauth_error})
        raise AuthorizationFailure("internal", "token_exchange_failed") from None

    granted = session.granted_scopes(answer, params.get("scope"))
    if provider.missing_required_scopes(granted):
        session.revoke_quietly(tokens)
        raise AuthorizationFailure("unsupported", "scope_not_granted")
    if not tokens.refresh_token:
        session.revoke_quietly(tokens)
        raise AuthorizationFailure("internal", "no_refresh_token")

    try:
        account_id, email = session.identify(answer, tokens, pending.nonce)
    except ProviderCallFailed as error:
        logger.warning("account identification failed", extra={"cause": error.reason})
        raise AuthorizationFailure("internal", "provider_error") from None
    connection_id = connection_id_for(pending.clientId, provider.id, pending.scheduleId, account_id)
    record = connected_record(
        deployment,
        connection_id,
        pending.clientId,
        provider,
        pending.scheduleId,
        (account_id, email),
        granted,
        tokens,
        now,
    )
    try:
        deployment.storage.connections.upsert_connected(record)
    except StorageUnavailable:
        # Tokens we cannot keep must not stay live at the provider, granted and unreachable.
        session.revoke_quietly(tokens)
        raise AuthorizationFailure("internal", "storage_unavailable") from None
    return connection_id
