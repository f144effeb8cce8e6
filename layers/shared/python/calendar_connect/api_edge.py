"""What every management route shares, the dialects' among them: the caller, the public base URL, the documented
answers, and a connect attempt started with the dialect's field names in its errors."""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from . import deployment
from .api_models import ErrorBody
from .connect_flow import StartedAuthorization, start_authorization
from .errors import InvalidArgument, PermissionDenied, ReturnUrlNotAllowed
from .http_answers import JSON
from .providers import Provider
from .records import ApiClient
from .return_urls import ReturnUrlError, validate_return_url

_ERROR_WHEN = {
    400: "Invalid input (INVALID_ARGUMENT)",
    401: "No key, unknown or revoked key (UNAUTHENTICATED)",
    403: "Return URL outside the client's allowed prefixes (PERMISSION_DENIED)",
    404: "Unknown provider or connection, or no webhook registered (NOT_FOUND)",
    413: "Body over 16 KiB (PAYLOAD_TOO_LARGE)",
    428: "FAILED_PRECONDITION (NOT_SUPPORTED_BY_PROVIDER, PROVIDER_NOT_CONFIGURED, REAUTH_REQUIRED or DISCONNECTED)",
    500: "INTERNAL",
    503: "Storage or a dependency is down (UNAVAILABLE); Retry-After set",
}
# Every answer, success or error: set once, in InitiateFunction's handler.
_NO_STORE = {"Cache-Control": {"description": "no-store", "schema": {"type": "string", "enum": ["no-store"]}}}


def documented_answers(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int, Any]:
    """A route's documented answers: 200 (its return type unless `ok` says otherwise) and its errors."""
    shared = (400, 401, 413, 500, 503)
    answers: dict[int, Any] = {200: {"description": "Successful Response", **({"content": ok} if ok else {})}}
    for status in sorted({*shared, *statuses}):
        answers[status] = {"description": _ERROR_WHEN[status], "content": {JSON: {"model": ErrorBody}}}
    answers[401]["headers"] = {"WWW-Authenticate": {"description": "Bearer (RFC 6750)", "schema": {"type": "string"}}}
    for answer in answers.values():
        answer["headers"] = {**answer.get("headers", {}), **_NO_STORE}
    return answers


def caller(router: BaseRouter) -> ApiClient:
    """The API client the request authenticated as (InitiateFunction's handler puts it in the context)."""
    return router.context["api_client"]


def base_url(router: BaseRouter) -> str:
    """Where this API is reachable from a browser: configured, else the domain the request came in on."""
    configured = deployment.current().settings.public_base_url
    if configured:
        return configured
    context = cast(APIGatewayProxyEventV2, router.current_event).request_context
    stage = context.stage
    return f"https://{context.domain_name}" + ("" if stage in (None, "", "$default") else f"/{stage}")


def checked_return_url(url: str, field: str) -> str:
    """The return URL normalised, or a 400 naming the dialect's `field`."""
    try:
        return validate_return_url(url)
    except ReturnUrlError as error:
        raise InvalidArgument.for_field(field, str(error)) from None


def start(
    router: BaseRouter, provider: Provider, schedule_id: str, return_url: str, dialect: str, *, return_url_field: str
) -> StartedAuthorization:
    """A connect attempt for the caller; a return URL outside its prefixes is a 403 naming `return_url_field`."""
    try:
        return start_authorization(
            deployment.current(), caller(router), provider, schedule_id, return_url, dialect, base_url(router)
        )
    except ReturnUrlNotAllowed:
        raise PermissionDenied(f"{return_url_field} is outside this client's allowed return-URL prefixes") from None
