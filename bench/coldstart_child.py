"""One cold start in a fresh interpreter: `python -m bench.coldstart_child <floor|card-floor|code dir> <event file>
[--anatomy|--restore]`.

Imports only what the Lambda runtime itself has loaded before the handler (json, os, sys, time), so
everything the handler module pulls in is counted. Prints one JSON line (last on stdout: the function's
own EMF metrics and logs come before it).

With --anatomy, the handler's dependencies are imported one group at a time before the handler module, each
timed: where a cold start's time goes beyond the floor (one DynamoDB client more than a plain cold start); the
first request is split into its calls and the code's own work around them (bench/call_log.py).

With --restore, the first request of a copy restored from a SnapStart snapshot, emulated with fork, with each of
its calls timed (bench/call_log.py), and the floor's the same way.
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
    (
        "our models (pydantic classes)",
        ("calendar_connect.records", "calendar_connect.api_models", "calendar_connect.settings"),
        "",
    ),
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


# The first request of --anatomy, split: the time inside its calls (bench/call_log.py), and the rest.
FIRST_REQUEST_CALLS = "first request: its DynamoDB and provider calls (new connections, each operation's first call)"
FIRST_REQUEST_OWN = "first request: the code's own work around the calls (first-use setup, first-use imports)"


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


def _card_floor() -> None:
    """The card's own floor: the SDK floor plus the libraries the product chose, set up as observability.py sets
    them up, and nothing of ours."""
    import boto3
    import httpx  # noqa: F401
    import pydantic  # noqa: F401
    from aws_lambda_powertools import Logger, Metrics, Tracer

    Logger()
    Tracer(auto_patch=False).patch(["botocore"])
    Metrics()
    boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT"])


def _first_request_after_restore(target: str, event: dict) -> dict:
    """--restore: SnapStart emulated (tests/support/snapstart.py). Ours: import the handler, run the before-snapshot
    hooks, fork; the child runs the after-restore hooks and serves its first request, both timed (Lambda counts the
    hooks in the restore the caller waits for). The floor: its clients made, fork; the child makes the same calls as
    the request on new connections (bench/floor.py; the event file names the request)."""
    import importlib

    from bench.call_log import CallLog
    from tests.support.snapstart import restore, restored_copies, take_snapshot

    if target == "floor":
        from bench.floor import Floor

        floor = Floor(os.environ["DYNAMODB_ENDPOINT"], event["tokenEndpoint"], event["clientId"])
        calls = floor.initiate if event["request"] == "initiate" else lambda: floor.callback(event["stateHash"])

        def first_request(_: int) -> dict:
            log = CallLog().install()
            cpu0, t0 = time.process_time(), time.perf_counter()
            calls()
            return {
                "first_request_ms": (time.perf_counter() - t0) * 1000,
                "cpu_ms": (time.process_time() - cpu0) * 1000,
                "calls": log.calls,
            }

    else:
        sys.path.insert(0, target)
        handler = importlib.import_module("app").lambda_handler
        take_snapshot()

        def first_request(_: int) -> dict:
            log = CallLog().install()  # in the copy: priming, in the parent, goes through botocore unwrapped
            cpu0, t0 = time.process_time(), time.perf_counter()
            restore()
            t1 = time.perf_counter()
            status = handler(event, _Context())["statusCode"]
            return {
                "restore_ms": (t1 - t0) * 1000,
                "first_request_ms": (time.perf_counter() - t0) * 1000,
                "cpu_ms": (time.process_time() - cpu0) * 1000,
                "status": status,
                "calls": log.calls,
            }

    [answer] = restored_copies(first_request, copies=1, run_hooks=False)
    return answer


def main(target: str, event_file: str, anatomy: bool = False, after_restore: bool = False) -> None:
    with open(event_file) as handle:
        event = json.load(handle)
    if after_restore:
        print(json.dumps(_first_request_after_restore(target, event)))
        return
    cpu0, t0 = time.process_time(), time.perf_counter()
    status = None
    steps = None
    if target == "floor":
        import boto3

        boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT"])
        t1 = t2 = time.perf_counter()
    elif target == "card-floor":
        _card_floor()
        t1 = t2 = time.perf_counter()
    else:
        sys.path.insert(0, target)  # /var/task comes first, then the layer (/opt/python, on PYTHONPATH)
        if anatomy:
            steps = _import_in_steps(target)
        import importlib

        handler = importlib.import_module("app").lambda_handler
        log = None
        if steps is not None:
            from bench.call_log import CallLog

            log = CallLog().install()
        t1 = time.perf_counter()
        status = handler(event, _Context())["statusCode"]
        t2 = time.perf_counter()
        if log is not None and steps is not None:  # httpx's import, made ahead by the log, counts as the request's
            calls = log.total_ms()
            steps.append([FIRST_REQUEST_CALLS, calls])
            steps.append([FIRST_REQUEST_OWN, (t2 - t1) * 1000 - calls + log.import_ms])
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
    main(sys.argv[1], sys.argv[2], anatomy="--anatomy" in sys.argv[3:], after_restore="--restore" in sys.argv[3:])
