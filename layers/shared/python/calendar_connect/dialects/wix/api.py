"""Wix `connectByOAuth` (InitiateFunction): its request and answer, and its field names in errors."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from ... import deployment
from ...api_edge import checked_return_url, documented_answers, start
from ...api_models import ID_PATTERN, ApiAnswer, ApiRequest
from ...errors import NotFound
from ...snapstart import register_before_snapshot
from ...timestamps import iso
from .. import Dialect
from . import CONNECT_BY_OAUTH

router = Router()


class ConnectByOAuthRequest(ApiRequest):
    """Wix External Calendars v2 `connectByOAuth`."""

    providerId: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    scheduleId: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    redirectUrl: str = Field(min_length=1, max_length=2048)


class ConnectByOAuthResponse(ApiAnswer):
    oauthUrl: str
    timeoutSeconds: int
    expiresAt: str


@register_before_snapshot
def prime() -> None:
    """Before a SnapStart snapshot, as deployment.prime builds the shared models: built on first use otherwise."""
    for model in (ConnectByOAuthRequest, ConnectByOAuthResponse):
        model.model_rebuild()


@router.post(CONNECT_BY_OAUTH, responses=documented_answers(403, 404, 428))
def connect_by_oauth(request: Annotated[ConnectByOAuthRequest, Body()]) -> ConnectByOAuthResponse:
    return_url = checked_return_url(request.redirectUrl, "redirectUrl")
    provider = deployment.current().providers.get(request.providerId)
    if provider is None:
        raise NotFound("Unknown provider: providerId")
    started = start(router, provider, request.scheduleId, return_url, Dialect.WIX, return_url_field="redirectUrl")
    return ConnectByOAuthResponse(
        oauthUrl=started.url, timeoutSeconds=started.timeout_seconds, expiresAt=iso(started.expires_at)
    )
