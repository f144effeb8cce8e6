"""Time to 503 while DynamoDB is out: nothing listening (connections refused) or a peer that accepts and never
answers (hanging). `python -m bench.outage`; figures in docs/performance.md ("Outages").

Each request is InitiateFunction's Wix event in this process, with a LambdaContext of template.yaml's timeout and
the deployment's default timeouts; its API key check is the first DynamoDB call, so it is the one that fails.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "shared" / "python")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)

import warnings  # noqa: E402

from calendar_connect import deployment  # noqa: E402
from tests.support.environment import function_environment  # noqa: E402
from tests.support.faults import SilentServer, refused_url  # noqa: E402
from tests.support.lambda_runtime import invoke, load_event  # noqa: E402

REQUESTS = 5


def seconds_to_answer(endpoint: str) -> list[float]:
    os.environ["DYNAMODB_ENDPOINT"] = endpoint
    deployment.reset()
    times = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        answer = invoke("InitiateFunction", load_event("initiate-wix.json"))
        times.append(time.perf_counter() - began)
        assert answer["statusCode"] == 503, answer
    return times


def main() -> int:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with tempfile.TemporaryDirectory() as directory:
        providers = Path(directory) / "providers.yaml"
        providers.write_text("{}\n")
        environment = function_environment(
            dynamodb_endpoint="",
            providers_file=providers,
            google_client_id="bench",
            google_client_secret="bench",
            microsoft_client_id="bench",
            microsoft_client_secret="bench",
            log_level="ERROR",
        )
        os.environ.update(environment)
        invoke("InitiateFunction", load_event("providers-list.json"))  # import the handler: a warm container
        rows = {"dead (refused)": seconds_to_answer(refused_url())}
        with SilentServer() as silent:
            rows["hanging (accepts, never answers)"] = seconds_to_answer(silent.url)
    print("| DynamoDB | time to 503, median | max |")
    print("| --- | --- | --- |")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
