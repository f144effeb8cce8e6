"""Pydantic models: the API's requests and answers, and the records kept in DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Every model is built on its first use, not at import: each function builds only the models its requests use
# (the callback none of the API's requests and answers), and a SnapStart snapshot holds those it primed.
_BUILT_ON_USE = ConfigDict(defer_build=True)
_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)
ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$"  # provider and schedule ids, wherever the API takes one


def iso(epoch_seconds: int | float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConnectionStatus(StrEnum):
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    REAUTH_REQUIRED = "REAUTH_REQUIRED"


# --- answers (each dialect's own request and answer: dialects/*/api.py) ----------------------------


class ProviderInfo(BaseModel):
    model_config = _BUILT_ON_USE

    providerId: str
    name: str
    calendarType: str
    calendarSource: str | None
    connectMethods: list[Literal["OAUTH", "CREDENTIALS"]]
    timeoutSeconds: int


class ProvidersResponse(BaseModel):
    model_config = _BUILT_ON_USE

    providers: list[ProviderInfo]


class Connection(BaseModel):
    model_config = _BUILT_ON_USE

    connectionId: str
    providerId: str
    calendarType: str
    scheduleId: str
    externalAccountId: str
    externalAccountEmail: str | None
    scopesGranted: list[str]
    status: ConnectionStatus
    createdAt: str
    updatedAt: str


class ConnectionResponse(BaseModel):
    model_config = _BUILT_ON_USE

    connection: Connection


class ConnectionsPage(BaseModel):
    model_config = _BUILT_ON_USE

    connections: list[Connection]
    nextCursor: str | None


class DisconnectResponse(BaseModel):
    model_config = _BUILT_ON_USE

    connection: Connection
    revokedAtProvider: bool | None


class AccessTokenResponse(BaseModel):
    model_config = _BUILT_ON_USE

    accessToken: str
    expiresAt: str


class FieldViolationBody(BaseModel):
    model_config = _BUILT_ON_USE

    field: str
    description: str


class ValidationErrorBody(BaseModel):
    model_config = _BUILT_ON_USE

    fieldViolations: list[FieldViolationBody]


class ApplicationErrorBody(BaseModel):
    model_config = _BUILT_ON_USE

    code: str
    description: str


class ErrorDetails(BaseModel):
    model_config = _BUILT_ON_USE

    applicationError: ApplicationErrorBody
    validationError: ValidationErrorBody | None = None


class ErrorBody(BaseModel):
    """Every management error (documented in the OpenAPI document; errors.ApiError.body() writes it)."""

    model_config = _BUILT_ON_USE

    message: str
    details: ErrorDetails


# --- records --------------------------------------------------------------------------------------


class ApiClient(BaseModel):
    model_config = _BUILT_ON_USE

    clientId: str
    name: str
    keyHash: str
    allowedReturnUrlPrefixes: list[str]
    revoked: bool = False
    createdAt: str


class PendingAuthorization(BaseModel):
    """One connect attempt, from initiate to callback. Keyed by the hash of its state."""

    model_config = _BUILT_ON_USE

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


class TokenSet(BaseModel):
    """Plain tokens; only ever held in memory, stored encrypted."""

    model_config = _BUILT_ON_USE

    access_token: str
    refresh_token: str | None = None
    expires_at: int  # epoch seconds
    token_type: str = "Bearer"


class ConnectionRecord(BaseModel):
    model_config = _BUILT_ON_USE

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

    def public(self) -> Connection:
        return Connection.model_validate(self.model_dump(include=set(Connection.model_fields)))


# --- webhooks -------------------------------------------------------------------------------------


class WebhookRequest(BaseModel):
    """`PUT /v2/external-calendars/webhook`."""

    model_config = _STRICT

    url: str = Field(min_length=1, max_length=2048)


class WebhookResponse(BaseModel):
    model_config = _BUILT_ON_USE

    url: str
    secret: str | None = Field(default=None, description="Only in the answer that created the webhook")


class WebhookSecretResponse(BaseModel):
    model_config = _BUILT_ON_USE

    secret: str


class WebhookDeletedResponse(BaseModel):
    model_config = _BUILT_ON_USE

    deleted: bool = Field(description="Whether a webhook was registered")


class WebhookSecretEntry(BaseModel):
    model_config = _BUILT_ON_USE

    secret: str
    signsUntil: int | None = None  # epoch seconds; None: the current secret


class WebhookRecord(BaseModel):
    """A client's webhook as stored on its ApiClients item; the secrets sealed (token_cipher) to the client id."""

    model_config = _BUILT_ON_USE

    clientId: str
    url: str
    sealedSecrets: bytes
    updatedAt: str


class WebhookEventType(StrEnum):
    CONNECTION_CREATED = "connection.created"
    CONNECTION_UPDATED = "connection.updated"
    CONNECTION_REAUTH_REQUIRED = "connection.reauth_required"
    CONNECTION_DISCONNECTED = "connection.disconnected"
    AUTHORIZATION_FAILED = "authorization.failed"


class AuthorizationFailedData(BaseModel):
    model_config = _BUILT_ON_USE

    attemptId: str
    providerId: str
    scheduleId: str
    error: str
    reason: str


class WebhookEvent(BaseModel):
    """What a receiver gets: the body of one delivery."""

    model_config = _BUILT_ON_USE

    type: WebhookEventType
    timestamp: str
    data: Connection | AuthorizationFailedData


class WebhookDelivery(BaseModel):
    """One event on its way to a client's webhook; `deliveryId` is its webhook-id, the same on every attempt."""

    model_config = _BUILT_ON_USE

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
