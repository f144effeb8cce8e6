"""One cold start in a fresh interpreter: `python -m bench.coldstart_child <floor|code dir> <event file>`.

Imports only what the Lambda runtime itself has loaded before the handler (json, os, sys, time), so
everything the handler module pulls in is counted. Prints one JSON line.
"""

import json
import os
import sys
import time


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    function_version = "$LATEST"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def main(target: str, event_file: str) -> None:
    with open(event_file) as handle:
        event = json.load(handle)
    cpu0, t0 = time.process_time(), time.perf_counter()
    status = None
    if target == "floor":
        import boto3

        boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT"])
        t1 = t2 = time.perf_counter()
    else:
        sys.path.insert(0, target)  # /var/task comes first, then the layer (/opt/python, on PYTHONPATH)
        import importlib

        handler = importlib.import_module("app").lambda_handler
        t1 = time.perf_counter()
        status = handler(event, _Context())["statusCode"]
        t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
