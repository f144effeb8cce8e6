"""The management API's requests, answers and error bodies, and the webhook events its clients receive.

The callback imports none of this (cold start): the records it reads and writes are in records.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .records import ConnectionRecord, ConnectionStatus

ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$"  # provider and schedule ids, wherever the API takes one


class _Answer(BaseModel):
    # Built on first use, not at import: the management API builds them with its routes' validation, and a SnapStart
    # snapshot holds those it primed.
    model_config = ConfigDict(defer_build=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


# --- answers (each dialect's own request and answer: dialects/*/api.py) ----------------------------


class ProviderInfo(_Answer):
    providerId: str
    name: str
    calendarType: str
    calendarSource: str | None
    connectMethods: list[Literal["OAUTH", "CREDENTIALS"]]
    timeoutSeconds: int


class ProvidersResponse(_Answer):
    providers: list[ProviderInfo]


# What the API shows of a stored connection: never its tokens, lease or version. (No docstring: the OpenAPI document
# would carry it.)
class Connection(_Answer):
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

    @classmethod
    def from_record(cls, record: ConnectionRecord) -> Connection:
        return cls.model_validate(record.model_dump(include=set(cls.model_fields)))


class ConnectionResponse(_Answer):
    connection: Connection


class ConnectionsPage(_Answer):
    connections: list[Connection]
    nextCursor: str | None


class DisconnectResponse(_Answer):
    connection: Connection
    revokedAtProvider: bool | None


class AccessTokenResponse(_Answer):
    accessToken: str
    expiresAt: str


class FieldViolationBody(_Answer):
    field: str
    description: str


class ValidationErrorBody(_Answer):
    fieldViolations: list[FieldViolationBody]


class ApplicationErrorBody(_Answer):
    code: str
    description: str


class ErrorDetails(_Answer):
    applicationError: ApplicationErrorBody
    validationError: ValidationErrorBody | None = None


class ErrorBody(_Answer):
    """Every management error (documented in the OpenAPI document; errors.ApiError.body() writes it)."""

    message: str
    details: ErrorDetails


# --- webhooks -------------------------------------------------------------------------------------


class WebhookRequest(_Request):
    """`PUT /v2/external-calendars/webhook`."""

    url: str = Field(min_length=1, max_length=2048)


class WebhookResponse(_Answer):
    url: str
    secret: str | None = Field(default=None, description="Only in the answer that created the webhook")


class WebhookSecretResponse(_Answer):
    secret: str


class WebhookDeletedResponse(_Answer):
    deleted: bool = Field(description="Whether a webhook was registered")


# --- webhook events: the body of one delivery -----------------------------------------------------


class WebhookEventType(StrEnum):
    CONNECTION_CREATED = "connection.created"
    CONNECTION_UPDATED = "connection.updated"
    CONNECTION_REAUTH_REQUIRED = "connection.reauth_required"
    CONNECTION_DISCONNECTED = "connection.disconnected"
    AUTHORIZATION_FAILED = "authorization.failed"


class AuthorizationFailedData(_Answer):
    attemptId: str
    providerId: str
    scheduleId: str
    error: str
    reason: str


class WebhookEvent(_Answer):
    """What a receiver gets: the body of one delivery."""

    type: WebhookEventType
    timestamp: str
    data: Connection | AuthorizationFailedData
