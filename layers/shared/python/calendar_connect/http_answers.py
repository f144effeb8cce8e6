"""Answers in the contract's shapes, each decided in one place: every management error as JSON, every browser page
as escaped HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from .errors import (
    ApiError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
    Unavailable,
)
from .observability import logger
from .provider_session import ProviderUnusable, Unusable

JSON = "application/json"
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# --- the management API -------------------------------------------------------------------------------


def api_error(error: BaseException, *, request_read: bool = True) -> ApiError:
    """Whatever a management request ended in, as the contract's error: the one mapping, before routing and after.

    `request_read`: False while the request itself was still being parsed, so that a ValueError there (a body the
    parser cannot read: multipart without a boundary, bytes that are not UTF-8) is the caller's malformed body.
    """
    if isinstance(error, ApiError):
        return error
    if isinstance(error, StorageUnavailable):
        return Unavailable()
    if isinstance(error, ProviderUnusable):
        return _provider_unusable(error)
    if isinstance(error, RequestUnsupportedContentType):
        # A JSON route sent another media type: a malformed body (400), as the contract has no 415.
        return InvalidArgument.for_field("body", "must be application/json")
    if isinstance(error, RequestValidationError):
        return invalid_argument_from(error.errors())
    if isinstance(error, ValueError) and not request_read:
        return InvalidArgument.for_field("body", "malformed body")
    logger.exception("unexpected error", exc_info=error)
    return Internal("Internal error")


def _provider_unusable(error: ProviderUnusable) -> ApiError:
    """A provider the request cannot use here (provider_session.Unusable says why)."""
    provider_id = error.provider_id
    if error.reason is Unusable.UNKNOWN:
        return NotFound("Unknown provider")
    if error.reason is Unusable.NOT_OAUTH:
        return FailedPrecondition(
            f"Provider {provider_id} does not connect by OAuth", application_code="NOT_SUPPORTED_BY_PROVIDER"
        )
    if error.reason is Unusable.NOT_CONFIGURED:
        return FailedPrecondition(
            f"Provider {provider_id} has no OAuth client in this deployment", application_code="PROVIDER_NOT_CONFIGURED"
        )
    if error.reason is Unusable.DISCOVERY_FAILED:
        return Unavailable("The provider's metadata could not be fetched; try again shortly")
    # The client-secrets secret could not be read: a dependency is down, not the caller's fault.
    logger.warning("provider credentials unreadable", extra={"cause": str(error)})
    return Unavailable()


def error_headers(error: ApiError) -> dict[str, str]:
    headers = {"Content-Type": JSON, "Cache-Control": "no-store"}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 3
    return headers


def error_event_response(error: ApiError) -> dict[str, Any]:
    """A whole API Gateway (payload 2.0) answer."""
    if error.status >= 500:
        logger.warning("request failed", extra={"code": error.code})
    return {
        "statusCode": error.status,
        "headers": error_headers(error),
        "body": json.dumps(error.body()),
        "isBase64Encoded": False,
    }


def invalid_argument_from(errors: Iterable[Mapping[str, Any]]) -> InvalidArgument:
    """Pydantic / Powertools validation errors as fieldViolations (no input values echoed)."""
    violations = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        if location and location[0] in ("body", "query", "header", "path"):
            location = location[1:]
        name = ".".join(location) or "body"
        message = "not valid JSON" if error.get("type") == "json_invalid" else str(error.get("msg", "invalid"))
        violations.append(FieldViolation(name, message))
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations) or "invalid request"
    return InvalidArgument(f"Invalid request: {summary}", violations)


# --- the browser's pages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    status: int
    title: str
    message: str
    retry_after: int | None = None


UNKNOWN_ATTEMPT = Page(
    400,
    "Unknown or missing sign-in attempt",
    "This link is not part of a sign-in in progress. Start connecting your calendar again from the website.",
)
# A browser that is not the one the attempt is bound to; says nothing of how the attempt stands.
ANOTHER_BROWSER = Page(
    403,
    "This sign-in was opened in another browser",
    "For your safety, finish connecting your calendar in the browser where you opened the link, "
    "or start again from the website.",
)
STORAGE_DOWN = Page(
    503, "Temporarily unavailable", "We could not finish connecting your calendar. Please try again in a moment.", 5
)
UNEXPECTED = Page(500, "Something went wrong", "We could not finish connecting your calendar. Please start again.")


def page(title: str, message: str) -> str:
    """A minimal HTML page; every dynamic value escaped."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )


BROWSER_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": _PAGE_CSP,
}
