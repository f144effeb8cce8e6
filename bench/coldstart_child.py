"""One cold start in a fresh interpreter: `python -m bench.coldstart_child <floor|code dir> <event file> [--anatomy]`.

Imports only what the Lambda runtime itself has loaded before the handler (json, os, sys, time), so
everything the handler module pulls in is counted. Prints one JSON line (last on stdout: the function's
own EMF metrics and logs come before it).

With --anatomy, the handler's dependencies are imported one group at a time before the handler module, each
timed: where a cold start's time goes beyond the floor (one DynamoDB client more than a plain cold start).
"""

import json
import os
import sys
import time

# Import order of --anatomy: each step's modules (imported by the functions whose code directory ends as the third
# field says, all when empty), then the handler module (what is left: our code and routes).
ANATOMY = (
    ("boto3 and the DynamoDB client (the floor)", (), ""),
    ("pydantic", ("pydantic", "pydantic.main"), ""),
    ("our models (pydantic classes)", ("calendar_connect.models", "calendar_connect.settings"), ""),
    ("providers (PyYAML, provider models)", ("calendar_connect.providers",), ""),
    ("Powertools Logger, Metrics, Tracer + X-Ray SDK, botocore patched", ("calendar_connect.observability",), ""),
    ("Powertools event handler (resolver)", ("aws_lambda_powertools.event_handler",), ""),
    (
        "Powertools OpenAPI validation (initiate only)",
        ("aws_lambda_powertools.event_handler.openapi.params", "aws_lambda_powertools.event_handler.openapi.models"),
        "initiate",
    ),
    ("our code and routes (the rest of the handler module)", (), ""),
)


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    function_version = "$LATEST"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def _import_in_steps(target: str) -> list[list]:
    import importlib

    steps: list[list] = []
    for index, (name, modules, only) in enumerate(ANATOMY):
        started = time.perf_counter()
        if index == 0:
            import boto3

            boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT"])
        elif index == len(ANATOMY) - 1:
            importlib.import_module("app")
        elif target.rstrip("/").endswith(only):
            for module in modules:
                importlib.import_module(module)
        steps.append([name, (time.perf_counter() - started) * 1000])
    return steps


def main(target: str, event_file: str, anatomy: bool = False) -> None:
    with open(event_file) as handle:
        event = json.load(handle)
    cpu0, t0 = time.process_time(), time.perf_counter()
    status = None
    steps = None
    if target == "floor":
        import boto3

        boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT"])
        t1 = t2 = time.perf_counter()
    else:
        sys.path.insert(0, target)  # /var/task comes first, then the layer (/opt/python, on PYTHONPATH)
        if anatomy:
            steps = _import_in_steps(target)
        import importlib

        handler = importlib.import_module("app").lambda_handler
        t1 = time.perf_counter()
        status = handler(event, _Context())["statusCode"]
        t2 = time.perf_counter()
        if steps is not None:
            steps.append(
                ["first request (DynamoDB and provider calls on new connections, first-use setup)", (t2 - t1) * 1000]
            )
    cpu = time.process_time() - cpu0
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.flush()
    print(
        json.dumps(
            {
                "import_ms": (t1 - t0) * 1000,
                "first_request_ms": (t2 - t1) * 1000,
                "init_ms": (t2 - t0) * 1000,
                "cpu_ms": cpu * 1000,
                "peak_mib": peak_kib / 1024,
                "status": status,
                "modules": sorted(sys.modules),
                "steps": steps,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], anatomy="--anatomy" in sys.argv[3:])
