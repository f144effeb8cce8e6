"""Replay an event file through a function, as the local gateway invokes it, against `make run`'s DynamoDB.

    make invoke FUNCTION=InitiateFunction EVENT=events/providers-list.json
    python -m scripts.invoke InitiateFunction events/providers-list.json

The function is loaded from its own code directory with the layer (local/gateway.py's load_function) and
given template.yaml's environment, pointed at DynamoDB Local on 127.0.0.1:$DYNAMODB_PORT (8000), where
`make run` has registered the example key the event files carry. Prints the HTTP answer API Gateway would
send. Google and Microsoft events answer 428 PROVIDER_NOT_CONFIGURED unless their clients are in the
environment (GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET, MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from local.apigw import translate_answer
from local.dynamodb import LOCAL_CREDENTIALS
from local.gateway import load_function, local_function_environment
from local.template import ROOT, functions, load_template, resolve_environment


def function_environment(function_name: str, dynamodb_port: int, port: int) -> dict[str, str]:
    """What `make run` gives its functions, minus what only its own process holds (the sandbox's secret and
    its token key: a fresh one here, so tokens stored by `make run` do not decrypt in a replay)."""
    template = load_template()
    parameters = {name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()}
    environment = resolve_environment(functions(template)[function_name], parameters)
    environment.update(
        {
            "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}",
            **local_function_environment(f"http://127.0.0.1:{dynamodb_port}"),
            "POWERTOOLS_METRICS_DISABLED": "1",
        }
    )
    if os.environ.get("PROVIDERS_FILE"):
        environment["PROVIDERS_FILE"] = os.environ["PROVIDERS_FILE"]
    return {k: v for k, v in environment.items() if k != "TOKEN_KMS_KEY_ID"}


def _dynamodb_answers(endpoint: str) -> bool:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    try:
        boto3.client("dynamodb", endpoint_url=endpoint, config=config, **LOCAL_CREDENTIALS).list_tables()
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="a function of template.yaml, e.g. InitiateFunction")
    parser.add_argument("event", type=Path, help="an event file, e.g. events/providers-list.json")
    args = parser.parse_args(argv)
    template_functions = functions(load_template())
    if args.function not in template_functions:
        parser.error(f"FUNCTION must be one of {', '.join(sorted(template_functions))}")
    event_path = args.event if args.event.is_absolute() else Path.cwd() / args.event
    try:
        event: dict[str, Any] = json.loads(event_path.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"EVENT {args.event}: {error}")

    dynamodb_port = int(os.environ.get("DYNAMODB_PORT") or 8000)
    environment = function_environment(args.function, dynamodb_port, int(os.environ.get("PORT") or 3000))
    if not _dynamodb_answers(environment["DYNAMODB_ENDPOINT"]):
        print(
            f"No DynamoDB Local on {environment['DYNAMODB_ENDPOINT']}: start `make run` in another terminal "
            "(or set DYNAMODB_PORT to the port it uses).",
            file=sys.stderr,
        )
        return 2
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(environment)
    layer = str(ROOT / "layers" / "shared" / "python")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    template = load_template()
    props = template["Resources"][args.function]["Properties"]
    defaults = template.get("Globals", {}).get("Function", {})
    # The function's log lines (stdout in Lambda) go to stderr here, so stdout is the HTTP answer alone.
    with contextlib.redirect_stdout(sys.stderr):
        function = load_function(
            template_functions[args.function],
            memory_mb=int(props.get("MemorySize", defaults.get("MemorySize", 128))),
            timeout_seconds=int(props.get("Timeout", defaults.get("Timeout", 3))),
        )
        answer = translate_answer(function.invoke(event))
    print(f"HTTP {answer.status}")
    for name, value in answer.headers:
        print(f"{name}: {value}")
    print()
    print(answer.body.decode("utf-8", errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
