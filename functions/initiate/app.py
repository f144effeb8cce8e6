"""InitiateFunction: the authenticated management API. Parses events, calls the logic, shapes answers."""

from __future__ import annotations

import base64
import json
import traceback
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from calendar_connect import connections, deadline, deployment, webhooks
from calendar_connect.api_clients import authenticate
from calendar_connect.connect_flow import start_authorization
from calendar_connect.errors import (
    ApiError,
    Internal,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    Unavailable,
)
from calendar_connect.http_answers import JSON, error_event_response, error_headers, invalid_argument_from
from calendar_connect.models import (
    ID_PATTERN,
    AccessTokenResponse,
    ApiClient,
    ConnectByOAuthRequest,
    ConnectByOAuthResponse,
    ConnectionResponse,
    ConnectionsPage,
    Dialect,
    DisconnectResponse,
    ErrorBody,
    ProviderInfo,
    ProvidersResponse,
    TeamUpInitiateRequest,
    TeamUpInitiateResponse,
    WebhookDeletedResponse,
    WebhookRequest,
    WebhookResponse,
    WebhookSecretResponse,
    iso,
)
from calendar_connect.observability import logger, metrics, tracer
from calendar_connect.provider_session import ProviderUnusable
from calendar_connect.request_limits import MAX_JSON_DEPTH, is_json, json_nesting_exceeds
from calendar_connect.snapstart import register_before_snapshot  # and the shared SnapStart hooks

app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="Calendar Connect management API",
    version="2",
    security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <api key> (or Token <api key>)")},
    security=[{"apiKey": []}],
)
CONNECTIONS = "/v2/external-calendars/connections"
WEBHOOK = "/v2/external-calendars/webhook"
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


# Every answer, success or error: set once, in lambda_handler.
_NO_STORE = {"Cache-Control": {"description": "no-store", "schema": {"type": "string", "enum": ["no-store"]}}}


def _errors(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int, Any]:
    """A route's documented answers: 200 (its return type unless `ok` says otherwise) and its errors."""
    shared = (400, 401, 413, 500, 503)
    answers: dict[int, Any] = {200: {"description": "Successful Response", **({"content": ok} if ok else {})}}
    for status in sorted({*shared, *statuses}):
        answers[status] = {"description": _ERROR_WHEN[status], "content": {JSON: {"model": ErrorBody}}}
    answers[401]["headers"] = {"WWW-Authenticate": {"description": "Bearer (RFC 6750)", "schema": {"type": "string"}}}
    for answer in answers.values():
        answer["headers"] = {**answer.get("headers", {}), **_NO_STORE}
    return answers


def _client() -> ApiClient:
    return app.context["api_client"]


def _base_url() -> str:
    """Where this API is reachable from a browser: configured, else the domain the request came in on."""
    configured = deployment.current().settings.public_base_url
    if configured:
        return configured
    context = app.current_event.request_context
    stage = context.stage
    return f"https://{context.domain_name}" + ("" if stage in (None, "", "$default") else f"/{stage}")


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response:
    if error.status >= 500:
        logger.warning("request failed", extra={"code": error.code})
    return Response(error.status, JSON, json.dumps(error.body()), headers=error_headers(error))


@app.exception_handler(RequestValidationError)
def _validation_error(error: RequestValidationError) -> Response:
    return _api_error(invalid_argument_from(list(error.errors())))


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(error: RequestUnsupportedContentType) -> Response:
    # A JSON route sent another media type: a malformed body (400), as the contract has no 415.
    return _api_error(InvalidArgument.for_field("body", "must be application/json"))


@app.exception_handler(ValueError)
def _unreadable_body(error: ValueError) -> Response:
    # Powertools raises a bare ValueError for a body it cannot parse (multipart without a boundary):
    # that is the caller's malformed body; any other ValueError is ours, a 500.
    frames = traceback.extract_tb(error.__traceback__)
    if any(f.name == "_get_body" and "openapi_validation" in f.filename for f in frames):
        return _api_error(InvalidArgument.for_field("body", "malformed body"))
    return _unexpected(error)


@app.not_found
def _no_route(error: Exception) -> Response:
    # A path API Gateway routed here that no route pattern accepts (e.g. a connection id with "?").
    return _api_error(NotFound("Not found"))


@app.exception_handler(StorageUnavailable)
def _storage_unavailable(error: StorageUnavailable) -> Response:
    return _api_error(Unavailable())


@app.exception_handler(ProviderUnusable)
def _credentials_unreadable(error: ProviderUnusable) -> Response:
    # The client-secrets secret could not be read: a dependency is down, not the caller's fault.
    logger.warning("provider credentials unreadable", extra={"cause": str(error)})
    return _api_error(Unavailable())


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return _api_error(Internal("Internal error"))


@app.post("/v2/external-calendars/connections/connect-by-oauth", responses=_errors(403, 404, 428))
def connect_by_oauth(request: Annotated[ConnectByOAuthRequest, Body()]) -> ConnectByOAuthResponse:
    started = start_authorization(
        deployment.current(),
        _client(),
        request.providerId,
        request.scheduleId,
        request.redirectUrl,
        Dialect.WIX,
        _base_url(),
        return_url_field="redirectUrl",
        provider_field="providerId",
    )
    return ConnectByOAuthResponse(
        oauthUrl=started.url, timeoutSeconds=started.timeout_seconds, expiresAt=iso(started.expires_at)
    )


def _form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """TeamUp sends JSON, form-urlencoded or multipart bodies."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    if media_type == "multipart/form-data":
        # Imported here: email.policy (the header parser) costs a cold start ~10 ms; only multipart bodies need it.
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        if not message.is_multipart():
            raise ValueError("malformed multipart body")
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                fields[name] = part.get_content().strip() if part.get_content_maintype() == "text" else None
        return fields
    if media_type in ("application/json", "") or media_type.endswith("+json"):
        parsed = json.loads(body or b"null")
        if not isinstance(parsed, dict):
            raise ValueError("the body must be a JSON object")
        return parsed
    raise ValueError(f"unsupported content type {media_type}")


@app.post(
    "/api/v2/external_calendars/accounts/oauth2/initiate",
    responses=_errors(
        403,
        404,
        428,
        ok={JSON: {"model": TeamUpInitiateResponse}, "application/xml": {"schema": {"type": "string"}}},
    ),
)
def teamup_initiate(response_format: Annotated[str, Query(alias="format", pattern="^(json|xml)$")] = "json"):  # type: ignore[no-untyped-def]
    event = app.current_event
    try:
        fields = _form_fields(event.headers.get("content-type", ""), _raw_body(event.raw_event))
        request = TeamUpInitiateRequest.model_validate(fields)
    except ValidationError as error:
        raise invalid_argument_from(list(error.errors())) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument.for_field(
            "body", str(error) if "unsupported" in str(error) else "malformed body"
        ) from None
    here = deployment.current()
    provider = next((p for p in here.providers.values() if p.calendar_source == request.calendar_source), None)
    if provider is None:
        raise NotFound("Unknown calendar_source")
    owner = (event.headers.get("teamup-provider-id") or "").strip() or _client().clientId
    if len(owner) > 200:
        raise InvalidArgument.for_field("TeamUp-Provider-ID", "at most 200 characters")
    started = start_authorization(
        here,
        _client(),
        provider.id,
        owner,
        request.redirect_uri,
        Dialect.TEAMUP,
        _base_url(),
        return_url_field="redirect_uri",
        provider_field="calendar_source",
    )
    answer = TeamUpInitiateResponse(uri=started.url, timeout_seconds=started.timeout_seconds)
    if response_format == "xml":
        from xml.sax.saxutils import escape  # imports urllib.request (~14 ms): only XML answers pay for it

        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<root><uri>{escape(answer.uri)}</uri><timeout_seconds>{answer.timeout_seconds}</timeout_seconds></root>"
        )
        return Response(200, "application/xml", xml)
    return Response(200, JSON, answer.model_dump_json())


@app.get("/v2/external-calendars/providers", responses=_errors())
def list_providers() -> ProvidersResponse:
    return ProvidersResponse(
        providers=[
            ProviderInfo(
                providerId=p.id,
                name=p.name,
                calendarType=p.calendar_type,
                calendarSource=p.calendar_source,
                connectMethods=p.connect_methods,
                timeoutSeconds=p.timeout_seconds,
            )
            for p in deployment.current().offered_providers()
        ]
    )


@app.get(CONNECTIONS, responses=_errors())
def list_connections(
    scheduleId: Annotated[str, Query(min_length=1, max_length=200, pattern=ID_PATTERN)],
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> ConnectionsPage:
    return connections.list_connections(deployment.current(), _client(), scheduleId, cursor)


@app.get(CONNECTIONS + "/<connectionId>", responses=_errors(404))
def get_connection(connectionId: str) -> ConnectionResponse:
    return ConnectionResponse(connection=connections.get_owned(deployment.current(), _client(), connectionId).public())


@app.delete(CONNECTIONS + "/<connectionId>", responses=_errors(404))
def delete_connection(connectionId: str) -> DisconnectResponse:
    return connections.disconnect(deployment.current(), _client(), connectionId)


@app.post(CONNECTIONS + "/<connectionId>/access-token", responses=_errors(404, 428))
def get_access_token(connectionId: str) -> AccessTokenResponse:
    return connections.access_token(deployment.current(), _client(), connectionId)


def _no_store(answer: Any) -> Response:
    return Response(200, JSON, answer.model_dump_json(exclude_none=True), headers={"Cache-Control": "no-store"})


@app.put(WEBHOOK, responses=_errors(ok={JSON: {"model": WebhookResponse}}))
def put_webhook(request: Annotated[WebhookRequest, Body()]):  # type: ignore[no-untyped-def]
    return _no_store(webhooks.put_webhook(deployment.current(), _client(), request.url))


@app.get(WEBHOOK, responses=_errors(404, ok={JSON: {"model": WebhookResponse}}))
def get_webhook():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.get_webhook(deployment.current(), _client()))


@app.delete(WEBHOOK, responses=_errors(ok={JSON: {"model": WebhookDeletedResponse}}))
def delete_webhook():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.delete_webhook(deployment.current(), _client()))


@app.post(WEBHOOK + "/rotate-secret", responses=_errors(404, ok={JSON: {"model": WebhookSecretResponse}}))
def rotate_webhook_secret():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.rotate_secret(deployment.current(), _client()))


# Before a SnapStart snapshot: every route's validation (its parameters', body's and answer's models), which the
# resolver otherwise builds on the route's first request; the schema itself is not kept.
register_before_snapshot(app.get_openapi_schema)


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidArgument.for_field("body", "not valid base64") from None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
# Not the response: it carries attempt URLs, binding cookies and access tokens, which must not reach X-Ray.
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):  # every DynamoDB and provider call ends before the deadline
        return _handle(event, context)


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Size and key are checked before routing and validation: nobody unauthenticated learns what is valid.
    here = deployment.current()
    try:
        body = _raw_body(event)
        if len(body) > here.settings.max_body_bytes:
            raise PayloadTooLarge(f"The body is over {here.settings.max_body_bytes // 1024} KiB")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        try:
            client = authenticate(here.storage.api_clients, headers.get("authorization"))
        except StorageUnavailable:
            raise Unavailable() from None
        # Parsers and validators recurse once per level: a deep body would end in RecursionError, a 500.
        if is_json(headers.get("content-type", "")) and json_nesting_exceeds(body):
            raise InvalidArgument.for_field("body", f"nested deeper than {MAX_JSON_DEPTH} levels")
    except ApiError as error:
        return error_event_response(error)
    app.append_context(api_client=client)
    answer = app.resolve(event, context)
    # Every management answer (keys, attempt URLs, tokens, connections) is for its caller only.
    answer.setdefault("headers", {})["Cache-Control"] = "no-store"
    return answer
