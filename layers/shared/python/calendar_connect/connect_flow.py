"""The connect flow, knowing no dialect: start an attempt, bind it to a browser, finish it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from . import deadline as invocation
from .deployment import Deployment
from .errors import (
    ApiError,
    AuthorizationFailure,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageUnavailable,
    Unavailable,
)
from .models import ApiClient, ConnectionRecord, ConnectionStatus, Dialect, PendingAuthorization, iso
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
from .return_urls import ReturnUrlError, is_allowed, validate_return_url, with_outcome

START_PATH = "/oauth2/start"
CALLBACK_PATH = "/oauth2/callback"
_CONNECTION_NAMESPACE = uuid.UUID("6f1d8a52-4c1e-4a7b-9d53-1f0c2b7e9a10")
_OUTCOME_WAIT_SECONDS = 15.0


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


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
    provider_id: str,
    schedule_id: str,
    return_url: str,
    dialect: Dialect,
    base_url: str,
    *,
    return_url_field: str,
    provider_field: str,
    now: int | None = None,
) -> StartedAuthorization:
    """Record a pending authorization and answer the URL to send the person's browser to."""
    try:
        return_url = validate_return_url(return_url)  # normalised: checked, stored and redirected to as is
    except ReturnUrlError as error:
        raise InvalidArgument.for_field(return_url_field, str(error)) from None
    try:
        session: ProviderSession | None = deployment.oauth(provider_id)
    except ProviderUnusable as unusable:
        if unusable.reason is not Unusable.DISCOVERY_FAILED:
            raise _refusal(unusable, provider_field) from None
        session = None  # the provider's metadata is down; a return URL this client may not use is still said first
    if not is_allowed(return_url, client.allowedReturnUrlPrefixes):
        raise PermissionDenied(f"{return_url_field} is outside this client's allowed return-URL prefixes")
    if session is None:
        raise Unavailable("The provider's metadata could not be fetched; try again shortly")
    provider = session.provider

    now = int(time.time()) if now is None else now
    state = secrets.token_urlsafe(32)  # 256 random bits
    verifier = secrets.token_urlsafe(64) if provider.pkce else None
    nonce = secrets.token_urlsafe(16) if provider.uses_openid else None
    redirect_uri = base_url.rstrip("/") + CALLBACK_PATH
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
    try:
        deployment.storage.pending.put_new(pending)
    except StorageUnavailable:
        raise Unavailable() from None
    if binding:
        url = with_query(base_url.rstrip("/") + START_PATH, {"attempt": state})
    else:
        url = session.authorization_url(pending, state)
    logger.info(
        "authorization started", extra={"providerId": provider.id, "clientId": client.clientId, "dialect": dialect}
    )
    count(AUTHORIZATION_STARTED, known_providers=deployment.providers, provider=provider.id, dialect=dialect)
    return StartedAuthorization(url=url, timeout_seconds=provider.timeout_seconds, expires_at=expires_at)


def _refusal(unusable: ProviderUnusable, provider_field: str) -> ApiError:
    """Initiate's answer for a provider it cannot start an attempt with."""
    provider_id = unusable.provider_id
    if unusable.reason is Unusable.UNKNOWN:
        return NotFound(f"Unknown provider: {provider_field}")
    if unusable.reason is Unusable.NOT_OAUTH:
        return FailedPrecondition(
            f"Provider {provider_id} does not connect by OAuth", application_code="NOT_SUPPORTED_BY_PROVIDER"
        )
    if unusable.reason is Unusable.NOT_CONFIGURED:
        return FailedPrecondition(
            f"Provider {provider_id} has no OAuth client in this deployment", application_code="PROVIDER_NOT_CONFIGURED"
        )
    # The client-secrets secret could not be read: a dependency is down, not the caller's fault.
    logger.warning("provider credentials unreadable", extra={"cause": str(unusable)})
    return Unavailable()


# --- the browser's side -------------------------------------------------------------------------------


@dataclass
class Redirect:
    location: str
    cookies: list[str] = field(default_factory=list)


@dataclass
class Page:
    status: int
    title: str
    message: str
    retry_after: int | None = None


def outcome_url(pending: PendingAuthorization, outcome: dict[str, str]) -> str:
    """The return URL with the outcome in the attempt's dialect."""
    if "connectionId" in outcome:
        ours = [("connectionId", outcome["connectionId"])]
        success = "1"
    else:
        ours = [("error", outcome["error"]), ("reason", outcome["reason"])]
        success = "0"
    if pending.dialect is Dialect.TEAMUP:
        ours.insert(0, ("success", success))
    return with_outcome(pending.returnUrl, ours)


def _failure(error: str, reason: str) -> dict[str, str]:
    return {"error": error, "reason": reason}


_UNKNOWN = Page(
    400,
    "Unknown or missing sign-in attempt",
    "This link is not part of a sign-in in progress. Start connecting your calendar again from the website.",
)
# A browser that is not the one the attempt is bound to; says nothing of how the attempt stands.
_ANOTHER_BROWSER = Page(
    403,
    "This sign-in was opened in another browser",
    "For your safety, finish connecting your calendar in the browser where you opened the link, "
    "or start again from the website.",
)
_STORAGE_DOWN = Page(
    503, "Temporarily unavailable", "We could not finish connecting your calendar. Please try again in a moment.", 5
)


def _live_attempt(deployment: Deployment, state_hash: str, now: int) -> PendingAuthorization | Redirect | Page:
    """The attempt, or the answer for one that cannot go on: unknown (no trusted target), expired, storage down.

    Expiry is checked here, on every read: DynamoDB's TTL deletes items only within about two days.
    """
    try:
        pending = deployment.storage.pending.get(state_hash)
    except StorageUnavailable:
        return _STORAGE_DOWN
    if pending is None:
        return _UNKNOWN
    if now >= pending.expiresAt:
        logger.info("start link expired", extra={"providerId": pending.providerId})
        count(START_LINK_EXPIRED, known_providers=deployment.providers, provider=pending.providerId)
        return Redirect(outcome_url(pending, _failure("internal", "expired")))
    return pending


def _holds_binding(pending: PendingAuthorization, presented: str | None) -> bool:
    """Whether the browser presented the cookie whose hash the attempt keeps."""
    return bool(
        pending.browserBindingHash
        and presented
        and hmac.compare_digest(hash_secret(presented), pending.browserBindingHash)
    )


def _is_bound_browser(pending: PendingAuthorization, presented: str | None) -> bool:
    """Whether this browser may use the attempt: any when it needs no binding, else only the one that bound it."""
    return not pending.requiresBrowserBinding or _holds_binding(pending, presented)


def _binding_cookie(name: str, token: str, pending: PendingAuthorization, now: int, secure: bool) -> str:
    # Path: the directory of both browser endpoints, so Back or reload on the start hop presents it too.
    path = urlsplit(pending.redirectUri).path.rsplit("/", 1)[0] + "/"
    return f"{name}={token}; Max-Age={max(pending.expiresAt - now, 1)}; Path={path}; HttpOnly; SameSite=Lax" + (
        "; Secure" if secure else ""
    )


def open_attempt(
    deployment: Deployment, attempt: str | None, cookies: dict[str, str], secure_cookie: bool, now: int | None = None
) -> Redirect | Page:
    """The optional hop: bind the attempt to this browser, then send it to the provider.

    An unopened link is a bearer link, so it opens only within START_LINK_SECONDS of initiate; once bound,
    the browser that bound it may come back (Back, reload) until the attempt's own expiry."""
    now = int(time.time()) if now is None else now
    if not attempt:
        return _UNKNOWN
    state_hash = hash_secret(attempt)
    follow_attempt(state_hash)
    pending = _live_attempt(deployment, state_hash, now)
    if not isinstance(pending, PendingAuthorization):
        return pending
    name = binding_cookie_name(state_hash)
    if pending.browserBindingHash is not None:
        if not _holds_binding(pending, cookies.get(name)):
            return _ANOTHER_BROWSER
        if pending.status != "PENDING":  # finished (or finishing) in this browser: its outcome again
            return Redirect(outcome_url(pending, _replayed_outcome(deployment, pending, now)))
        return _to_provider(deployment, pending, attempt, [])
    if now >= pending.createdAt + deployment.settings.start_link_seconds:
        return Redirect(outcome_url(pending, _failure("internal", "expired")))
    token = secrets.token_urlsafe(32)
    try:
        bound = deployment.storage.pending.bind_browser(state_hash, hash_secret(token), now)
    except StorageUnavailable:
        return _STORAGE_DOWN
    if not bound:  # another browser bound it since the read, or it was used without the hop
        return _ANOTHER_BROWSER
    logger.info("start link opened", extra={"providerId": pending.providerId})
    count(START_LINK_OPENED, known_providers=deployment.providers, provider=pending.providerId)
    return _to_provider(deployment, pending, attempt, [_binding_cookie(name, token, pending, now, secure_cookie)])


def _to_provider(
    deployment: Deployment, pending: PendingAuthorization, state: str, cookies: list[str]
) -> Redirect | Page:
    try:
        url = deployment.oauth(pending.providerId).authorization_url(pending, state)
    except ProviderUnusable as unusable:
        logger.warning("provider unusable", extra={"providerId": pending.providerId, "reason": unusable.reason.name})
        return Redirect(outcome_url(pending, _failure("internal", "provider_error")))
    return Redirect(url, cookies=cookies)


def finish_authorization(
    deployment: Deployment, params: dict[str, str], cookies: dict[str, str], now: int | None = None
) -> Redirect | Page:
    """The provider's redirect back: consume the state once, connect, and send the browser home."""
    now = int(time.time()) if now is None else now
    state = params.get("state")
    if not state:
        return _UNKNOWN
    state_hash = hash_secret(state)
    follow_attempt(state_hash)
    store = deployment.storage.pending
    presented = cookies.get(binding_cookie_name(state_hash))
    # No read first: the one conditional UpdateItem answers the attempt, claimed or not (as _live_attempt would);
    # its condition includes the browser binding, so a callback from another browser leaves the attempt unused.
    try:
        claim = store.claim(state_hash, now, hash_secret(presented) if presented else None)
    except StorageUnavailable:
        return _STORAGE_DOWN  # nothing was read, so there is no trusted return URL to send the browser to
    pending = claim.pending
    if pending is None:
        return _UNKNOWN
    if now >= pending.expiresAt:  # before anything else; DynamoDB's TTL deletes only within about two days
        outcome = _failure("internal", "expired")
        _finished(deployment, pending, outcome, now)
        return Redirect(outcome_url(pending, outcome))
    if not _is_bound_browser(pending, presented):
        return _ANOTHER_BROWSER  # the code is not redeemed; the bound browser can still finish
    if not claim.claimed:  # already used (CONSUMED or DONE): the first callback's outcome, to the bound browser
        return Redirect(outcome_url(pending, _replayed_outcome(deployment, pending, now)))

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
    return Redirect(outcome_url(pending, outcome))


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
        session.revoke_quietly(tokens)
        raise AuthorizationFailure("internal", "storage_unavailable") from None
    return connection_id


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
