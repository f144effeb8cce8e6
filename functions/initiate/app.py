"""InitiateFunction: the authenticated management API. Parses events, calls the logic, shapes answers."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from calendar_connect import connections, deadline, deployment, routes, webhooks
from calendar_connect.api_clients import authenticate
from calendar_connect.api_edge import caller, documented_answers
from calendar_connect.api_models import (
    ID_PATTERN,
    AccessTokenResponse,
    Connection,
    ConnectionResponse,
    ConnectionsPage,
    DisconnectResponse,
    ProviderInfo,
    ProvidersResponse,
    WebhookDeletedResponse,
    WebhookRequest,
    WebhookResponse,
    WebhookSecretResponse,
)
from calendar_connect.dialects.teamup import api as teamup
from calendar_connect.dialects.wix import api as wix
from calendar_connect.errors import ApiError, InvalidArgument, NotFound, PayloadTooLarge, StorageUnavailable
from calendar_connect.http_answers import JSON, api_error, error_event_response
from calendar_connect.observability import logger, metrics, tracer
from calendar_connect.records import ApiClient
from calendar_connect.request_limits import MAX_JSON_DEPTH, is_json, json_nesting_exceeds, raw_body
from calendar_connect.snapstart import register_before_snapshot  # and the shared SnapStart hooks

app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="Calendar Connect management API",
    version="2",
    security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <api key> (or Token <api key>)")},
    security=[{"apiKey": []}],
)
_REQUEST_READ = "request_read"


def _request_read(router: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    # Powertools runs its request validation before any middleware of ours: past here the request was read.
    router.context[_REQUEST_READ] = True
    return next_middleware(router)


app.use(middlewares=[_request_read])


def _answer(error: Exception) -> Response:
    answer = error_event_response(api_error(error, request_read=bool(app.context.get(_REQUEST_READ))))
    return Response(answer["statusCode"], JSON, answer["body"], headers=answer["headers"])


@app.exception_handler(Exception)
def _failed(error: Exception) -> Response:
    return _answer(error)


@app.not_found
def _no_route(error: Exception) -> Response:
    # A path API Gateway routed here that no route pattern accepts (e.g. a connection id with "?").
    return _answer(NotFound("Not found"))


app.include_router(wix.router)
app.include_router(teamup.router)


def _client() -> ApiClient:
    return caller(app)


@app.get(routes.PROVIDERS, responses=documented_answers())
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


@app.get(routes.CONNECTIONS, responses=documented_answers())
def list_connections(
    scheduleId: Annotated[str, Query(min_length=1, max_length=200, pattern=ID_PATTERN)],
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> ConnectionsPage:
    return connections.list_connections(deployment.current(), _client(), scheduleId, cursor)


@app.get(routes.CONNECTION, responses=documented_answers(404))
def get_connection(connectionId: str) -> ConnectionResponse:
    return ConnectionResponse(
        connection=Connection.from_record(connections.get_owned(deployment.current(), _client(), connectionId))
    )


@app.delete(routes.CONNECTION, responses=documented_answers(404))
def delete_connection(connectionId: str) -> DisconnectResponse:
    return connections.disconnect(deployment.current(), _client(), connectionId)


@app.post(routes.ACCESS_TOKEN, responses=documented_answers(404, 428))
def get_access_token(connectionId: str) -> AccessTokenResponse:
    return connections.access_token(deployment.current(), _client(), connectionId)


def _no_store(answer: Any) -> Response:
    return Response(200, JSON, answer.model_dump_json(exclude_none=True), headers={"Cache-Control": "no-store"})


@app.put(routes.WEBHOOK, responses=documented_answers(ok={JSON: {"model": WebhookResponse}}))
def put_webhook(request: Annotated[WebhookRequest, Body()]):  # type: ignore[no-untyped-def]
    return _no_store(webhooks.put_webhook(deployment.current(), _client(), request.url))


@app.get(routes.WEBHOOK, responses=documented_answers(404, ok={JSON: {"model": WebhookResponse}}))
def get_webhook():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.get_webhook(deployment.current(), _client()))


@app.delete(routes.WEBHOOK, responses=documented_answers(ok={JSON: {"model": WebhookDeletedResponse}}))
def delete_webhook():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.delete_webhook(deployment.current(), _client()))


@app.post(routes.ROTATE_WEBHOOK_SECRET, responses=documented_answers(404, ok={JSON: {"model": WebhookSecretResponse}}))
def rotate_webhook_secret():  # type: ignore[no-untyped-def]
    return _no_store(webhooks.rotate_secret(deployment.current(), _client()))


# Before a SnapStart snapshot: every route's validation (its parameters', body's and answer's models), which the
# resolver otherwise builds on the route's first request; the schema itself is not kept.
register_before_snapshot(app.get_openapi_schema)


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
        body = raw_body(event)
        if len(body) > here.settings.max_body_bytes:
            raise PayloadTooLarge(f"The body is over {here.settings.max_body_bytes // 1024} KiB")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        client = authenticate(here.storage.api_clients, headers.get("authorization"))
        # Parsers and validators recurse once per level: a deep body would end in RecursionError, a 500.
        if is_json(headers.get("content-type", "")) and json_nesting_exceeds(body):
            raise InvalidArgument.for_field("body", f"nested deeper than {MAX_JSON_DEPTH} levels")
    except (ApiError, StorageUnavailable) as error:  # anything else is a bug of ours: the invocation fails, alarmed
        return error_event_response(api_error(error))
    app.append_context(api_client=client)
    answer = app.resolve(event, context)
    # Every management answer (keys, attempt URLs, tokens, connections) is for its caller only.
    answer.setdefault("headers", {})["Cache-Control"] = "no-store"
    return answer
