"""Answers in the contract's shapes: management errors as JSON, browser pages as escaped HTML."""

from __future__ import annotations

import html
import json
from typing import Any

from .errors import ApiError, FieldViolation, InvalidArgument

JSON = "application/json"
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def error_headers(error: ApiError) -> dict[str, str]:
    headers = {"Content-Type": JSON, "Cache-Control": "no-store"}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 3
    return headers


def error_event_response(error: ApiError) -> dict[str, Any]:
    """A whole API Gateway (payload 2.0) answer, for errors raised before routing."""
    return {
        "statusCode": error.status,
        "headers": error_headers(error),
        "body": json.dumps(error.body()),
        "isBase64Encoded": False,
    }


def invalid_argument_from(errors: list[dict[str, Any]]) -> InvalidArgument:
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
