"""Using a connection: read, list, disconnect, and a valid access token on demand.

StorageUnavailable propagates: the API answers it as 503 UNAVAILABLE in one place.
"""

from __future__ import annotations

import time
from enum import Enum

from . import deadline as invocation
from .api_models import AccessTokenResponse, Connection, ConnectionsPage, DisconnectResponse
from .dal import InvalidCursor
from .deployment import Deployment
from .errors import FailedPrecondition, Internal, InvalidArgument, NotFound, StorageUnavailable, Unavailable
from .oauth_client import ProviderCallFailed
from .observability import (
    ACCESS_TOKEN_REFRESHED,
    ACCESS_TOKEN_SERVED,
    count,
    follow_connection,
    logger,
)
from .observability import REAUTH_REQUIRED as REAUTH_REQUIRED_METRIC
from .provider_session import ProviderSession, ProviderUnusable, Unusable
from .records import ApiClient, ConnectionRecord, ConnectionStatus, TokenSet
from .timestamps import iso
from .token_cipher import DecryptionError

REFRESH_MARGIN_SECONDS = 300  # refresh when the token expires within 5 minutes
_LEASE_SECONDS = 30
_WAIT_SECONDS = 20.0
REAUTH_REQUIRED = "REAUTH_REQUIRED"  # the application code of a connection the provider no longer honours
_MAX_ID_BYTES = 256  # ours are UUIDs; DynamoDB refuses partition keys over 2048 bytes


def get_owned(deployment: Deployment, client: ApiClient, connection_id: str) -> ConnectionRecord:
    """Another client's connection is as unknown as one that does not exist."""
    if len(connection_id.encode()) > _MAX_ID_BYTES:
        raise NotFound("Unknown connection")  # DynamoDB would refuse the key, and that is no outage
    record = deployment.storage.connections.get(connection_id)
    if record is None or record.clientId != client.clientId:
        raise NotFound("Unknown connection")
    return record


def list_connections(
    deployment: Deployment, client: ApiClient, schedule_id: str, cursor: str | None
) -> ConnectionsPage:
    try:
        records, next_cursor = deployment.storage.connections.list_for_schedule(
            client.clientId, schedule_id, deployment.settings.page_size, cursor
        )
    except InvalidCursor as error:
        raise InvalidArgument.for_field("cursor", str(error)) from None
    return ConnectionsPage(connections=[Connection.from_record(r) for r in records], nextCursor=next_cursor)


def _session(deployment: Deployment, record: ConnectionRecord) -> ProviderSession:
    """The connection's provider session: Internal when the provider is gone from the configuration, else Unavailable
    (the provider or its metadata cannot be reached, or this deployment has no OAuth client for it)."""
    try:
        return deployment.oauth(record.providerId)
    except ProviderUnusable as unusable:
        logger.warning("provider unusable", extra={"providerId": record.providerId, "reason": unusable.reason.name})
        if unusable.reason is Unusable.UNKNOWN:
            raise Internal("The connection's provider is no longer configured") from None
        raise Unavailable("The provider cannot be reached as configured") from None


def stored_tokens(deployment: Deployment, record: ConnectionRecord) -> TokenSet | None:
    """The connection's tokens, decrypted; Internal when they cannot be, StorageUnavailable when KMS is down."""
    if record.tokens is None:
        return None
    try:
        return deployment.cipher.decrypt(record.connectionId, record.tokens)
    except DecryptionError:
        logger.error("stored tokens do not decrypt", extra={"connectionId": record.connectionId})
        raise Internal("The connection's tokens cannot be read") from None


def disconnect(
    deployment: Deployment, client: ApiClient, connection_id: str, now: int | None = None
) -> DisconnectResponse:
    """Revoke at the provider where it can, erase the tokens, keep the connection as DISCONNECTED."""
    while True:
        record = get_owned(deployment, client, connection_id)
        if record.status is ConnectionStatus.DISCONNECTED:
            return DisconnectResponse(
                connection=Connection.from_record(record), revokedAtProvider=record.revokedAtProvider
            )
        revoked = _revoke(deployment, record)
        stamp = iso(int(time.time()) if now is None else now)
        updated = deployment.storage.connections.mark_disconnected(connection_id, record.version, stamp, revoked)
        if updated is not None:
            logger.info("connection disconnected", extra={"connectionId": connection_id, "revoked": revoked})
            return DisconnectResponse(connection=Connection.from_record(updated), revokedAtProvider=revoked)
        # Changed under us (a refresh or reconnect): read it again.


def _revoke(deployment: Deployment, record: ConnectionRecord) -> bool | None:
    """None: the provider offers no revocation; False: it was tried or impossible, and not confirmed.

    Whatever happens here, the caller erases the tokens: a failed revocation never keeps them.
    """
    try:
        session = deployment.oauth(record.providerId)
    except ProviderUnusable as unusable:
        if unusable.provider is None or not unusable.provider.may_revoke:
            return None  # gone from the configuration, or it never offered revocation
        logger.warning("revocation impossible", extra={"providerId": record.providerId, "reason": unusable.reason.name})
        return False
    if not session.revokes:
        return None
    try:
        tokens = deployment.cipher.decrypt(record.connectionId, record.tokens) if record.tokens else None
    except DecryptionError:
        # StorageUnavailable (KMS down) is not caught: the tokens stay, to be revoked on a retry.
        logger.error(
            "stored tokens do not decrypt; erasing them unrevoked", extra={"connectionId": record.connectionId}
        )
        return False
    if tokens is None:
        return False  # REAUTH_REQUIRED erased them: nothing left to revoke with
    token, hint = (
        (tokens.refresh_token, "refresh_token") if tokens.refresh_token else (tokens.access_token, "access_token")
    )
    revoked = session.revoke(token, hint)
    if revoked is False:
        logger.warning("revocation failed at the provider", extra={"providerId": record.providerId})
    return revoked


def access_token(deployment: Deployment, client: ApiClient, connection_id: str) -> AccessTokenResponse:
    """A token valid for at least 5 more minutes; one refresh at the provider however many ask at once."""
    wait_until = time.monotonic() + _WAIT_SECONDS
    delay = 0.05
    waited_on: int | None = None  # the version someone else was refreshing when this call began to wait
    while True:
        now = int(time.time())
        record = get_owned(deployment, client, connection_id)
        follow_connection(record.connectionId)
        _refuse_unusable(record)
        tokens = stored_tokens(deployment, record)
        if tokens is None:
            raise Internal("The connection has no tokens")
        if tokens.expires_at - now > REFRESH_MARGIN_SECONDS:
            return _served(deployment, record, tokens)
        if waited_on is not None and record.version > waited_on and tokens.expires_at > now:
            # Refreshed by the call we waited for: a provider granting under 5 minutes must not get one refresh each.
            return _served(deployment, record, tokens)
        outcome = refresh_connection(deployment, record, tokens, now)
        if isinstance(outcome, TokenSet):
            count(ACCESS_TOKEN_REFRESHED, known_providers=deployment.providers, provider=record.providerId)
            return _served(deployment, record, outcome)
        if outcome is Contended.LEASE_HELD:
            waited_on = record.version if waited_on is None else waited_on
        # Contended.CHANGED (reconnected, disconnected during the refresh): its new state answers.
        if time.monotonic() > wait_until or not invocation.sleep(delay):
            raise Unavailable("The token refresh is taking too long; try again", retry_after=2)
        delay = min(delay * 2, 0.5)


def _refuse_unusable(record: ConnectionRecord) -> None:
    if record.status is ConnectionStatus.DISCONNECTED:
        raise FailedPrecondition("The connection is disconnected", application_code="DISCONNECTED")
    if record.status is ConnectionStatus.REAUTH_REQUIRED:
        raise _reauth_required()


def _reauth_required() -> FailedPrecondition:
    return FailedPrecondition(
        "The provider no longer honours this connection; the person must connect again",
        application_code=REAUTH_REQUIRED,
    )


def _served(deployment: Deployment, record: ConnectionRecord, tokens: TokenSet) -> AccessTokenResponse:
    count(ACCESS_TOKEN_SERVED, known_providers=deployment.providers, provider=record.providerId)
    return AccessTokenResponse(accessToken=tokens.access_token, expiresAt=iso(tokens.expires_at))


class Contended(Enum):
    """Why refresh_connection did not refresh: someone else holds the connection."""

    LEASE_HELD = "lease_held"  # another caller is refreshing this version (or it moved on before the lease)
    CHANGED = "changed"  # changed during the refresh (reconnected, disconnected): read it again


def refresh_connection(
    deployment: Deployment, record: ConnectionRecord, tokens: TokenSet, now: int
) -> TokenSet | Contended:
    """The one rotation-safe refresh, for the access-token route and the keep-alive job alike.

    Takes the refresh lease over the record's version, refreshes once at the provider, and writes the new
    tokens (a rotated refresh token among them) and the next keep-alive time over that same version.
    On invalid_grant the connection becomes REAUTH_REQUIRED and FailedPrecondition(REAUTH_REQUIRED) is
    raised; a provider failure raises Unavailable, storage StorageUnavailable, both after releasing the lease
    and changing nothing else.
    """
    connections = deployment.storage.connections
    lease_free = record.refreshLeaseUntil is None or record.refreshLeaseUntil < now
    if not (
        lease_free and connections.acquire_refresh_lease(record.connectionId, record.version, now, now + _LEASE_SECONDS)
    ):
        return Contended.LEASE_HELD
    try:
        session = _session(deployment, record)
        if not tokens.refresh_token:
            raise Internal("The connection has no refresh token")
        fresh = session.refresh(tokens.refresh_token, now)
    except ProviderCallFailed as error:
        if error.oauth_error == "invalid_grant":
            if connections.mark_reauth_required(record.connectionId, record.version, iso(now)) is None:
                return Contended.CHANGED
            logger.info("refresh token no longer honoured", extra={"connectionId": record.connectionId})
            count(REAUTH_REQUIRED_METRIC, known_providers=deployment.providers, provider=record.providerId)
            raise _reauth_required() from None
        _release_lease(deployment, record)
        logger.warning("refresh failed", extra={"cause": error.reason, "oauthError": error.oauth_error})
        raise Unavailable("The provider did not refresh the token; try again shortly") from None
    except BaseException:
        _release_lease(deployment, record)  # the next call may refresh at once, not after the lease runs out
        raise
    if not fresh.refresh_token:
        fresh = fresh.model_copy(update={"refresh_token": tokens.refresh_token})  # not rotated: keep the old one
    try:
        stored = connections.store_refreshed_tokens(
            record.connectionId,
            record.version,
            deployment.cipher.encrypt(record.connectionId, fresh),
            fresh.expires_at,
            iso(now),
            session.provider.next_keepalive_at(now),
        )
    except BaseException:
        _release_lease(deployment, record)
        raise
    if stored is None:
        logger.warning("connection changed during refresh", extra={"connectionId": record.connectionId})
        return Contended.CHANGED
    return fresh


def _release_lease(deployment: Deployment, record: ConnectionRecord) -> None:
    try:
        deployment.storage.connections.release_refresh_lease(record.connectionId, record.version)
    except StorageUnavailable:
        logger.warning("refresh lease not released; it runs out by itself", extra={"connectionId": record.connectionId})
