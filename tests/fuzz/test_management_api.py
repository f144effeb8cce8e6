"""Schemathesis against the OpenAPI document the management API generates, every route, through the
local API Gateway (payload 2.0 events, as in AWS) and the real InitiateFunction on DynamoDB Local."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from local.gateway import Gateway, load_function
from local.template import functions, load_template, routes
from scripts.openapi import generated

MAX_EXAMPLES = 50  # per operation: the module runs in well under a minute on two cores


def _with_document(gateway: Gateway, document: bytes) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/openapi.json":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [document]
        return gateway(environ, start_response)

    return app


@pytest.fixture
def management_api(environment: dict[str, str]) -> Any:
    template = load_template()
    initiate = load_function(functions(template)["InitiateFunction"], timeout_seconds=20)
    gateway = Gateway([r for r in routes(template) if r.function == "InitiateFunction"], {"InitiateFunction": initiate})
    return schemathesis.openapi.from_wsgi("/openapi.json", _with_document(gateway, generated().encode()))


schema = schemathesis.pytest.from_fixture("management_api")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_without_5xx_and_as_documented(case: Any, api_client: Any) -> None:
    _, key = api_client
    response = case.call(headers={"Authorization": f"Bearer {key}"})
    # Answers conform (status, content type, body schema), never a 5xx; a random connection id being
    # unknown (404) is the right answer, not a positive-data failure.
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
    )
    # Every error the function answers has the contract's shape (an undeclared method never reaches it:
    # API Gateway answers that 404 itself).
    if response.status_code >= 400 and case.method.upper() == case.operation.method.upper():
        body = json.loads(response.content)
        assert body["details"]["applicationError"]["code"], (response.status_code, case.method, case.path)
