"""The management API's requests, answers and error bodies, and the webhook events its clients receive.

The callback imports none of this (cold start): the records it reads and writes are in records.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .records import ConnectionRecord, ConnectionStatus

ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$"  # provider and schedule ids, wherever the API takes one


class ApiAnswer(BaseModel):
    """The base of every answer the management API gives (each dialect's too)."""

    # Built on first use, not at import: the management API builds them with its routes' validation, and a SnapStart
    # snapshot holds those it primed.
    model_config = ConfigDict(defer_build=True)


class ApiRequest(BaseModel):
    """The base of every request body the management API reads (each dialect's too): unknown fields refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


# --- answers (each dialect's own request and answer: dialects/*/api.py) ----------------------------


class ProviderInfo(ApiAnswer):
    providerId: str
    name: str
    calendarType: str
    calendarSource: str | None
    connectMethods: list[Literal["OAUTH", "CREDENTIALS"]]
    timeoutSeconds: int


class ProvidersResponse(ApiAnswer):
    providers: list[ProviderInfo]


# What the API shows of a stored connection: never its tokens, lease or version. (No docstring: the OpenAPI document
# would carry it.)
class Connection(ApiAnswer):
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


class ConnectionResponse(ApiAnswer):
    connection: Connection


class ConnectionsPage(ApiAnswer):
    connections: list[Connection]
    nextCursor: str | None


class DisconnectResponse(ApiAnswer):
    connection: Connection
    revokedAtProvider: bool | None


class AccessTokenResponse(ApiAnswer):
    accessToken: str
    expiresAt: str


class FieldViolationBody(ApiAnswer):
    field: str
    description: str


class ValidationErrorBody(ApiAnswer):
    fieldViolations: list[FieldViolationBody]


class ApplicationErrorBody(ApiAnswer):
    code: str
    description: str


class ErrorDetails(ApiAnswer):
    applicationError: ApplicationErrorBody
    validationError: ValidationErrorBody | None = None


class ErrorBody(ApiAnswer):
    """Every management error (documented in the OpenAPI document; errors.ApiError.body() writes it)."""

    message: str
    details: ErrorDetails


# --- webhooks -------------------------------------------------------------------------------------


class WebhookRequest(ApiRequest):
    """`PUT /v2/external-calendars/webhook`."""

    url: str = Field(min_length=1, max_length=2048)


class WebhookResponse(ApiAnswer):
    url: str
    secret: str | None = Field(default=None, description="Only in the answer that created the webhook")


class WebhookSecretResponse(ApiAnswer):
    secret: str


class WebhookDeletedResponse(ApiAnswer):
    deleted: bool = Field(description="Whether a webhook was registered")


# --- webhook events: the body of one delivery -----------------------------------------------------


class WebhookEventType(StrEnum):
    CONNECTION_CREATED = "connection.created"
    CONNECTION_UPDATED = "connection.updated"
    CONNECTION_REAUTH_REQUIRED = "connection.reauth_required"
    CONNECTION_DISCONNECTED = "connection.disconnected"
    AUTHORIZATION_FAILED = "authorization.failed"


class AuthorizationFailedData(ApiAnswer):
    attemptId: str
    providerId: str
    scheduleId: str
    error: str
    reason: str


class WebhookEvent(ApiAnswer):
    """What a receiver gets: the body of one delivery."""

    type: WebhookEventType
    timestamp: str
    data: Connection | AuthorizationFailedData
