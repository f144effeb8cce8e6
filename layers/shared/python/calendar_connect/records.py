"""The records kept in DynamoDB: API clients, connect attempts, connections and their tokens, webhooks and
their deliveries. What the API shows of them is in api_models."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    # Built on first use, not at import: each function builds only the records its requests read or write, and a
    # SnapStart snapshot holds those it primed.
    model_config = ConfigDict(defer_build=True)


class ConnectionStatus(StrEnum):
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    REAUTH_REQUIRED = "REAUTH_REQUIRED"


class ApiClient(_Record):
    clientId: str
    name: str
    keyHash: str
    allowedReturnUrlPrefixes: list[str]
    revoked: bool = False
    createdAt: str


class PendingAuthorization(_Record):
    """One connect attempt, from initiate to callback. Keyed by the hash of its state."""

    stateHash: str
    providerId: str
    clientId: str
    scheduleId: str
    returnUrl: str
    dialect: str  # the label of the dialect the attempt was started in (dialects.Dialect); opaque here
    redirectUri: str
    codeVerifier: str | None = None
    nonce: str | None = None
    createdAt: int
    expiresAt: int  # the DynamoDB TTL attribute: createdAt + the provider's timeout_seconds
    status: Literal["PENDING", "CONSUMED", "DONE"] = "PENDING"
    requiresBrowserBinding: bool = False
    browserBindingHash: str | None = None
    outcome: dict[str, str] | None = None  # {"connectionId"} or {"error", "reason"}, for replay


class TokenSet(_Record):
    """Plain tokens; only ever held in memory, stored encrypted."""

    access_token: str
    refresh_token: str | None = None
    expires_at: int  # epoch seconds
    token_type: str = "Bearer"


class ConnectionRecord(_Record):
    connectionId: str
    clientId: str
    providerId: str
    calendarType: str
    scheduleId: str
    externalAccountId: str
    externalAccountEmail: str | None = None
    scopesGranted: list[str] = []
    status: ConnectionStatus
    createdAt: str
    updatedAt: str
    version: int = 1
    tokens: bytes | None = None  # AES-256-GCM ciphertext of a TokenSet, bound to connectionId
    accessTokenExpiresAt: int | None = None
    refreshLeaseUntil: int | None = None
    revokedAtProvider: bool | None = None
    keepAliveDueAt: int | None = None  # CONNECTED only: when the keep-alive job must next use the refresh token


class WebhookSecretEntry(_Record):
    secret: str
    signsUntil: int | None = None  # epoch seconds; None: the current secret

    def signs_at(self, now: int) -> bool:
        """The current secret, or one rotated out whose overlap has not ended by `now`."""
        return self.signsUntil is None or self.signsUntil > now


class WebhookRecord(_Record):
    """A client's webhook as stored on its ApiClients item; the secrets sealed (token_cipher) to the client id."""

    clientId: str
    url: str
    sealedSecrets: bytes
    updatedAt: str


class WebhookDelivery(_Record):
    """One event on its way to a client's webhook; `deliveryId` is its webhook-id, the same on every attempt."""

    deliveryId: str
    clientId: str
    eventType: str
    body: str  # the exact JSON that is signed and sent, fixed at the first attempt
    status: Literal["PENDING", "DELIVERED", "DEAD"] = "PENDING"
    attempts: int = 0
    createdAt: int
    firstAttemptAt: int | None = None
    nextAttemptAt: int | None = None
    lastError: str | None = None
