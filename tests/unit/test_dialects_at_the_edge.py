"""Issue 13: the dialects live at the edge, each route path is written once, and domain errors become HTTP answers
in one place (http_answers.api_error), without looking into Powertools' internals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from calendar_connect import dialects, http_answers, observability, routes
from calendar_connect.dialects import Dialect, outcome_url, teamup, wix
from calendar_connect.errors import InvalidArgument, NotFound, StorageUnavailable
from calendar_connect.provider_session import ProviderUnusable, Unusable
from local.template import ROOT, load_template
from local.template import routes as template_routes
from tests.support.lambda_runtime import run_in_fresh_interpreter

LAYER = Path(observability.__file__).parent
DIALECT_PACKAGE = Path(dialects.__file__).parent
_DIALECT_WORDS = re.compile("|".join(d.value for d in Dialect), re.IGNORECASE)


def test_no_layer_module_outside_the_dialect_package_mentions_a_dialect() -> None:
    # Given every Python module of the layer below the function edge
    below_the_edge = [p for p in LAYER.rglob("*.py") if DIALECT_PACKAGE not in p.parents]
    assert len(below_the_edge) > 20
    # Then none names a dialect (in code, docstrings or comments) or branches on one
    mentions = {p.name: _DIALECT_WORDS.findall(p.read_text()) for p in below_the_edge}
    assert {name: found for name, found in mentions.items() if found} == {}
    # And the metric dimension's values are the dialect package's labels
    assert {d.value for d in Dialect} == observability.DIALECTS


def test_each_dialect_words_the_outcome_its_own_way() -> None:
    home = "https://site.example/cal?tab=1"
    connected, failed = {"connectionId": "c-1"}, {"error": "reject", "reason": "access_denied"}
    assert outcome_url(Dialect.WIX, home, connected) == home + "&connectionId=c-1"
    assert outcome_url("wix", home, failed) == home + "&error=reject&reason=access_denied"
    assert outcome_url(Dialect.TEAMUP, home, connected) == home + "&success=1&connectionId=c-1"
    assert outcome_url("teamup", home, failed) == home + "&success=0&error=reject&reason=access_denied"
    # And an attempt in a dialect this code does not know (a newer version's, after a rollback) still gets home
    assert outcome_url("future", home, connected) == home + "&connectionId=c-1"


def _powertools_rule(path: str) -> str:
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def test_template_routes_are_the_paths_the_code_defines() -> None:
    # Given template.yaml's HttpApi events (API Gateway's routes, and the local gateway's)
    declared = {(r.function, _powertools_rule(r.path)) for r in template_routes(load_template())}
    # Then they are exactly the paths written once in the code, each function's own
    browser = {routes.START, routes.CALLBACK}
    management = {
        wix.CONNECT_BY_OAUTH,
        teamup.INITIATE,
        routes.PROVIDERS,
        routes.CONNECTIONS,
        routes.CONNECTION,
        routes.ACCESS_TOKEN,
        routes.WEBHOOK,
        routes.ROTATE_WEBHOOK_SECRET,
    }
    assert {path for function, path in declared if function == "CallbackFunction"} == browser
    assert {path for function, path in declared if function == "InitiateFunction"} == management
    # And no handler writes a path literally
    for function in ("initiate", "callback"):
        source = (ROOT / "functions" / function / "app.py").read_text()
        assert not re.search(r"""["']/(v2|api|oauth2)/""", source), function


def _status_and_body(error: BaseException, *, request_read: bool = True) -> tuple[int, dict, dict]:
    answer = http_answers.error_event_response(http_answers.api_error(error, request_read=request_read))
    return answer["statusCode"], answer["headers"], json.loads(answer["body"])


def test_a_value_error_while_the_request_is_read_is_a_malformed_body_and_after_it_a_500() -> None:
    status, headers, body = _status_and_body(ValueError("Missing boundary"), request_read=False)
    assert status == 400
    assert body["details"]["validationError"]["fieldViolations"] == [{"field": "body", "description": "malformed body"}]
    assert headers == {"Content-Type": "application/json", "Cache-Control": "no-store"}
    status, _, body = _status_and_body(ValueError("a bug of ours"), request_read=True)
    assert (status, body["details"]["applicationError"]["code"]) == (500, "INTERNAL")
    assert "bug" not in json.dumps(body)


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("down"),
        ProviderUnusable(Unusable.CREDENTIALS_UNREADABLE),
        ProviderUnusable(Unusable.DISCOVERY_FAILED, "google"),
    ],
)
def test_dependencies_down_are_503_with_retry_after(error: Exception) -> None:
    status, headers, body = _status_and_body(error)
    assert (status, body["details"]["applicationError"]["code"]) == (503, "UNAVAILABLE")
    assert int(headers["Retry-After"]) > 0


def test_api_errors_keep_their_own_answer() -> None:
    assert _status_and_body(NotFound("Unknown connection"))[0] == 404
    status, _, body = _status_and_body(InvalidArgument.for_field("redirect_uri", "must be https"))
    assert status == 400 and body["message"] == "redirect_uri: must be https"
    assert _status_and_body(Exception("nope"))[0] == 500


def test_the_management_api_recognises_no_error_by_powertools_internals() -> None:
    # A malformed body used to be recognised by a private Powertools frame (`_get_body`) in the traceback.
    for source in (ROOT / "functions" / "initiate" / "app.py", Path(http_answers.__file__)):
        text = source.read_text()
        assert "traceback" not in text and "_get_body" not in text, source.name


_PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module("app")
print(json.dumps({name: name in sys.modules for name in sys.argv[2].split(",")}))
"""


def test_the_callback_imports_no_dialect_routes_models_or_openapi_params() -> None:
    unused = (
        "calendar_connect.dialects.wix.api",
        "calendar_connect.dialects.teamup.api",
        "calendar_connect.api_edge",
        "aws_lambda_powertools.event_handler.openapi.params",
    )
    loaded = run_in_fresh_interpreter("callback", _PROBE, ",".join(unused))
    assert loaded == dict.fromkeys(unused, False)
