"""API Gateway HTTP API (payload format 2.0) in front of Lambda handlers: routes, events, answers.

What API Gateway does, as the local runner needs it: match a route from template.yaml, turn the HTTP
request into a 2.0 event, and turn the handler's answer back into an HTTP response.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from local.template import Route

NOT_FOUND_BODY = json.dumps({"message": "Not Found"}, separators=(",", ":"))
INTERNAL_ERROR_BODY = json.dumps({"message": "Internal Server Error"}, separators=(",", ":"))
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_API_ID = "local"

# Bodies of these media types reach the function as text; anything else is base64-encoded.
_TEXT_MEDIA = re.compile(
    r"^(text/.*|application/(json|xml|javascript|ecmascript|x-javascript)|application/[^;]*\+(json|xml))$"
)


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as it reached the gateway."""

    method: str
    path: str  # decoded path, e.g. /v2/x/abc
    raw_query: str  # exactly as sent, without the "?"
    headers: list[tuple[str, str]]  # in order, names as sent, repeats kept
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]

    @property
    def route_key(self) -> str:
        return f"{self.route.method} {self.route.path}"


def _route_pattern(path: str) -> re.Pattern[str]:
    """`/a/{id}` matches one path segment; `/a/{rest+}` the rest of the path (API Gateway's greedy form)."""
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            pattern += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            pattern += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            pattern += re.escape(part)
    return re.compile(f"^{pattern}$")


@dataclass
class Router:
    """Routes as template.yaml declares them; exact paths win over parameterised ones, as in API Gateway."""

    routes: list[Route]
    _compiled: list[tuple[int, Route, re.Pattern[str]]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        for route in self.routes:
            self._compiled.append((route.path.count("{"), route, _route_pattern(route.path)))
        self._compiled.sort(key=lambda item: item[0])

    def match(self, method: str, path: str) -> RouteMatch | None:
        for _, route, pattern in self._compiled:
            if route.method not in (method.upper(), "ANY"):
                continue
            found = pattern.match(path)
            if found:
                return RouteMatch(route, found.groupdict())
        return None


def _joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated headers comma-joined (format 2.0 has no multi-value headers)."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _query_parameters(raw_query: str) -> dict[str, str]:
    joined: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def is_text(content_type: str) -> bool:
    return bool(_TEXT_MEDIA.match(content_type.split(";")[0].strip().lower()))


def build_event(request: HttpRequest, match: RouteMatch, now: float | None = None) -> dict[str, Any]:
    """The payload-2.0 event API Gateway's HTTP API sends for this request and route."""
    now = time.time() if now is None else now
    headers = _joined_headers((n, v) for n, v in request.headers if n.lower() != "cookie")
    # Cookie headers leave `headers` for the `cookies` list, one entry per cookie.
    cookies = [c.strip() for n, v in request.headers if n.lower() == "cookie" for c in v.split(";") if c.strip()]
    host = headers.get("host", "localhost")
    domain = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1] if ":" in host.lstrip("[") else "80")
    request_id = base64.b32encode(secrets.token_bytes(10)).decode().rstrip("=")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.raw_query:
        event["queryStringParameters"] = _query_parameters(request.raw_query)
    event["requestContext"] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": request.method.upper(),
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": match.route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    if request.body:
        if is_text(headers.get("content-type", "")):
            try:
                event["body"] = request.body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_response(status: int, body: str) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], body.encode())


def not_found() -> HttpResponse:
    return _json_response(404, NOT_FOUND_BODY)


def internal_error() -> HttpResponse:
    """What API Gateway answers when the function fails or answers something it cannot read."""
    return _json_response(500, INTERNAL_ERROR_BODY)


def translate_answer(answer: Any) -> HttpResponse:
    """A function's answer as API Gateway turns it into HTTP (format 2.0, including its inference rules)."""
    if not isinstance(answer, dict) or "statusCode" not in answer:
        # Format 2.0 infers a 200 JSON answer from anything that is not a response object.
        return _json_response(200, answer if isinstance(answer, str) else json.dumps(answer))
    try:
        status = int(answer["statusCode"])
        headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("Set-Cookie", str(cookie)) for cookie in answer.get("cookies") or [])
        body = answer.get("body") or ""
        if not isinstance(body, str):
            body = json.dumps(body)
        data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode("utf-8")
    except (TypeError, ValueError):
        return internal_error()
    if not any(name.lower() == "content-type" for name, _ in headers) and data:
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status, headers, data)


def request_from_event(event: dict[str, Any]) -> HttpRequest:
    """The HTTP request an event stands for (to compare event files with what the runner builds)."""
    headers = list((event.get("headers") or {}).items())
    if event.get("cookies"):
        headers.append(("cookie", "; ".join(event["cookies"])))
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    http = event.get("requestContext", {}).get("http", {})
    return HttpRequest(
        method=http.get("method", "GET"),
        path=event.get("rawPath") or http.get("path", "/"),
        raw_query=event.get("rawQueryString", ""),
        headers=headers,
        body=data,
        source_ip=http.get("sourceIp", "127.0.0.1"),
        protocol=http.get("protocol", "HTTP/1.1"),
    )
