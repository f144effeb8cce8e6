"""env.json (`sam local invoke --env-vars env.json`, for those with Docker) is enough for the functions to run:
every variable template.yaml gives them, a region for boto3, and make run's DynamoDB Local."""

from __future__ import annotations

import json
import os
import sys

from local.template import ROOT, functions, load_template
from tests.support.lambda_runtime import run_child

SCRIPT = """
import json, sys
from tests.support.lambda_runtime import invoke, load_event
answer = invoke(sys.argv[1], load_event(sys.argv[2]))
print(json.dumps({"status": answer["statusCode"], "body": answer["body"]}))
"""


def env_json() -> dict[str, str]:
    return json.loads((ROOT / "env.json").read_text())["Parameters"]


def test_env_json_names_every_variable_the_template_sets() -> None:
    given = env_json()
    for name, function in functions(load_template()).items():
        missing = (
            set(function.environment)
            - set(given)
            - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
        )
        assert not missing, f"{name}: env.json lacks {sorted(missing)}"
    assert given["AWS_DEFAULT_REGION"]  # boto3 raises NoRegionError without a region
    assert (
        given["DYNAMODB_ENDPOINT"] == "http://host.docker.internal:8000"
    )  # make run's DynamoDB Local, from a container


def test_a_function_runs_with_env_json_alone(dynamodb, example_client) -> None:
    # Given only what env.json sets (as sam local invoke gives a container), pointed at this test's DynamoDB Local
    env = {**env_json(), "DYNAMODB_ENDPOINT": dynamodb.endpoint}
    env.update(
        PATH=os.environ["PATH"],
        PYTHONPATH=os.pathsep.join([str(ROOT / "layers" / "shared" / "python"), str(ROOT)]),
    )
    # When the providers event is invoked in a fresh interpreter
    command = [sys.executable, "-c", SCRIPT, "InitiateFunction", "providers-list.json"]
    answer = run_child("the providers event with env.json alone", command, env, timeout=60)
    # Then it answers (no NoRegionError, the example key found in the table)
    assert answer["status"] == 200, answer
    assert {p["providerId"] for p in json.loads(answer["body"])["providers"]} == {"apple"}
