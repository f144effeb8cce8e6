"""Invoke the functions as Lambda would: the handler module loaded from its own code directory."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from local.gateway import LambdaContext
from local.template import ROOT, functions, load_template

EVENTS = ROOT / "events"
# The key the event files carry: an example for local use only, registered by the tests; no secret.
EXAMPLE_API_KEY = "cc_example01_EventFilesOnlyThisKeyIsNotASecretAnywhere00"
EXAMPLE_CLIENT_ID = "example01"
EXAMPLE_PREFIX = "https://booking.example.com/calendar/"
_modules: dict[str, ModuleType] = {}
# The context a handler is invoked with: the memory the tests have always claimed, template.yaml's Timeout.
MEMORY_MB = 512
TIMEOUT_SECONDS = 20


def handler_module(function_name: str) -> ModuleType:
    if function_name not in _modules:
        function = functions(load_template())[function_name]
        module_file, _, _ = function.handler.rpartition(".")
        path = Path(function.code_dir) / f"{module_file}.py"
        spec = importlib.util.spec_from_file_location(f"lambda_{function_name}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _modules[function_name] = module
    return _modules[function_name]


def invoke(function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    from calendar_connect.observability import metrics

    context = LambdaContext(function_name, MEMORY_MB, TIMEOUT_SECONDS)
    try:
        return handler_module(function_name).lambda_handler(event, context)
    finally:
        # With metrics disabled (as in tests) Powertools never flushes; a long-lived process would fill its buffer.
        metrics.clear_metrics()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def json_body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])
