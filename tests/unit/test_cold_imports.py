"""A cold start imports only what the function needs before its first request (issue 7).

Each case runs in a fresh interpreter with tracing enabled, as in Lambda (`Tracing: Active`), because the
X-Ray patching is what used to pull httpx into every cold start.
"""

from __future__ import annotations

from tests.support.lambda_runtime import run_in_fresh_interpreter

DEFERRED = ("httpx", "cryptography", "email.policy", "xml.sax.saxutils")  # email.parser comes with http.client

_PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module("app")
from aws_xray_sdk.core import patcher
loaded = {name: name in sys.modules for name in sys.argv[2].split(",")}
patched_at_import = sorted(patcher._PATCHED_MODULES)
from calendar_connect import oauth_client
client = oauth_client.http_client()
print(json.dumps({"loaded": loaded, "patched_at_import": patched_at_import,
                  "patched_after_first_provider_call": sorted(patcher._PATCHED_MODULES),
                  "provider_client": type(client).__name__}))
"""


def _cold_import(function_dir: str) -> dict:
    return run_in_fresh_interpreter(function_dir, _PROBE, ",".join(DEFERRED))


def test_initiate_imports_no_http_client_crypto_or_parsers_before_it_needs_them() -> None:
    probe = _cold_import("initiate")
    assert probe["loaded"] == dict.fromkeys(DEFERRED, False)


def test_callback_imports_no_http_client_or_crypto_before_its_first_request() -> None:
    probe = _cold_import("callback")
    assert probe["loaded"] == dict.fromkeys(DEFERRED, False)


def test_callback_imports_the_records_it_stores_but_none_of_the_management_apis_models() -> None:
    probe = run_in_fresh_interpreter("callback", _PROBE, "calendar_connect.records,calendar_connect.api_models")
    assert probe["loaded"] == {"calendar_connect.records": True, "calendar_connect.api_models": False}


def test_tracing_patches_botocore_at_import_and_httpx_with_the_first_provider_client() -> None:
    probe = _cold_import("initiate")
    assert probe["patched_at_import"] == ["botocore"]
    assert probe["patched_after_first_provider_call"] == ["botocore", "httpx"]
    assert probe["provider_client"] == "_InstrumentedClient"  # patched before the client was made, so traced
