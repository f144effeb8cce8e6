"""Invoke the functions as Lambda would: the handler module loaded from its own code directory."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from local.examples import EXAMPLE_API_KEY, EXAMPLE_CLIENT_ID, EXAMPLE_PREFIX
from local.gateway import LambdaContext
from local.template import ROOT, functions, load_template

EVENTS = ROOT / "events"
__all__ = ["EXAMPLE_API_KEY", "EXAMPLE_CLIENT_ID", "EXAMPLE_PREFIX"]  # the event files' client (local/examples.py)
_modules: dict[str, ModuleType] = {}
_GLOBAL_VARIABLES = load_template()["Globals"]["Function"]["Environment"]["Variables"]
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


def invoke(function_name: str, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """The handler's answer to `event`, with a fresh context of template.yaml's timeout unless one is given."""
    from calendar_connect.observability import metrics

    context = context or LambdaContext(function_name, MEMORY_MB, TIMEOUT_SECONDS)
    try:
        return handler_module(function_name).lambda_handler(event, context)
    finally:
        # With metrics disabled (as in tests) Powertools never flushes; a long-lived process would fill its buffer.
        metrics.clear_metrics()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def json_body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


# A sampled trace: the X-Ray SDK records and sends the request's subsegments, as in Lambda with tracing on.
SAMPLED_TRACE_ID = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"


def lambda_variables(task_root: str, function_name: str) -> dict[str, str]:
    """Reserved variables the Lambda runtime sets, so that libraries (the X-Ray SDK, Powertools) behave as in
    Lambda; tracing on, as template.yaml deploys it, its subsegments sent by UDP to a local daemon address."""
    return {
        "LAMBDA_TASK_ROOT": task_root,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "_X_AMZN_TRACE_ID": SAMPLED_TRACE_ID,
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }


def run_in_fresh_interpreter(function_dir: str, script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run `script` in a new interpreter set up like a traced Lambda cold start of the function in functions/<dir>
    (the layer and the repository on the path, tracing on, placeholder table names; no AWS is reached unless the
    script asks); its first argument is the function's code directory. Answers the JSON of its last stdout line."""
    code_dir = str(ROOT / "functions" / function_dir)
    return run_child(
        f"a fresh interpreter of {function_dir}",
        [sys.executable, "-c", script, code_dir, *args],
        {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared" / "python"), str(ROOT)]),
            **lambda_variables(code_dir, f"fresh-{function_dir}"),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_METRICS_DISABLED": "true",
            # As template.yaml sets them: Powertools' cold-start count is printed even with metrics disabled.
            **{name: _GLOBAL_VARIABLES[name] for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")},
            "PENDING_TABLE": "pending",
            "CONNECTIONS_TABLE": "connections",
            "API_CLIENTS_TABLE": "api-clients",
            **(env or {}),
        },
        timeout=60,
    )


def run_child(what: str, command: list[str], env: dict[str, str], timeout: float) -> Any:
    """Run a child process from the repository root; its answer is the JSON of its last stdout line."""
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
