"""Invoke the functions as Lambda would: the handler module loaded from its own code directory."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import ROOT, functions, load_template

EVENTS = ROOT / "events"
# The key the event files carry: an example for local use only, registered by the tests; no secret.
EXAMPLE_API_KEY = "cc_example01_EventFilesOnlyThisKeyIsNotASecretAnywhere00"
EXAMPLE_CLIENT_ID = "example01"
EXAMPLE_PREFIX = "https://booking.example.com/calendar/"
_modules: dict[str, ModuleType] = {}


@dataclass
class FakeLambdaContext:
    """What the Lambda runtime hands a handler: only its descriptive fields exist outside AWS."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


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

    try:
        return handler_module(function_name).lambda_handler(event, FakeLambdaContext(function_name=function_name))
    finally:
        # With metrics disabled (as in tests) Powertools never flushes; a long-lived process would fill its buffer.
        metrics.clear_metrics()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def json_body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])
