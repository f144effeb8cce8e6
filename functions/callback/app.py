"""CallbackFunction: the public browser endpoints. Parses events, calls the flow, answers redirects or pages."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from calendar_connect import (
    deadline,
    deployment,
    routes,
    snapstart,  # noqa: F401 - registers the SnapStart hooks
)
from calendar_connect.connect_flow import Answer, Redirect, ReturnToWebsite, finish_authorization, open_attempt
from calendar_connect.dialects import outcome_url
from calendar_connect.http_answers import BROWSER_HEADERS, UNEXPECTED, Page, page
from calendar_connect.observability import logger, metrics, tracer

app = APIGatewayHttpResolver()


def _query() -> dict[str, str]:
    # A repeated parameter arrives comma-joined; we keep the first value, never a merged one.
    return {
        k: v.split(",")[0] if k == "state" else v for k, v in (app.current_event.query_string_parameters or {}).items()
    }


def _cookies() -> dict[str, str]:
    jar: dict[str, str] = {}
    for cookie in app.current_event.cookies or []:
        name, _, value = cookie.partition("=")
        jar.setdefault(name.strip(), value.strip())
    return jar


def _answer(result: Answer) -> Response:
    """The one place a browser answer takes its HTTP shape: a redirect, or a page."""
    if isinstance(result, ReturnToWebsite):
        result = Redirect(outcome_url(result.dialect, result.return_url, result.outcome))
    if isinstance(result, Redirect):
        return Response(302, None, "", headers={**BROWSER_HEADERS, "Location": result.location}, cookies=result.cookies)
    headers = dict(BROWSER_HEADERS)
    if result.retry_after is not None:
        headers["Retry-After"] = str(result.retry_after)
    return Response(result.status, "text/html; charset=utf-8", page(result.title, result.message), headers=headers)


def _secure_cookie() -> bool:
    base = deployment.current().settings.public_base_url
    return not base.startswith(("http://127.0.0.1", "http://localhost"))


@app.get(routes.START)
def start() -> Response:
    attempt = (app.current_event.query_string_parameters or {}).get("attempt")
    return _answer(open_attempt(deployment.current(), attempt, _cookies(), _secure_cookie()))


@app.get(routes.CALLBACK)
def callback() -> Response:
    result = finish_authorization(deployment.current(), _query(), _cookies())
    metrics.add_metric(name="CallbackPage" if isinstance(result, Page) else "CallbackRedirect", unit="Count", value=1)
    return _answer(result)


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return _answer(UNEXPECTED)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
# Not the response: it carries attempt URLs, binding cookies and access tokens, which must not reach X-Ray.
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):  # every DynamoDB and provider call ends before the deadline
        return app.resolve(event, context)
