"""template.yaml as the local runner and the tests read it: functions, routes, environment, tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form intrinsics (!Ref, !Sub, !GetAtt...) as {"Fn::X": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway form, e.g. /v2/x/{connectionId}
    function: str


@dataclass(frozen=True)
class Function:
    name: str
    code_dir: Path
    handler: str
    environment: dict[str, Any]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == kind}


def functions(template: dict[str, Any]) -> dict[str, Function]:
    defaults = template.get("Globals", {}).get("Function", {})
    found = {}
    for name, resource in _resources(template, "AWS::Serverless::Function").items():
        props = resource["Properties"]
        env = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        found[name] = Function(name, ROOT / props["CodeUri"], props.get("Handler", defaults.get("Handler")), env)
    return found


def routes(template: dict[str, Any]) -> list[Route]:
    found = []
    for name, resource in _resources(template, "AWS::Serverless::Function").items():
        for event in resource["Properties"].get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                found.append(Route(event["Properties"]["Method"].upper(), event["Properties"]["Path"], name))
    return found


@dataclass(frozen=True)
class Schedule:
    function: str
    expression: str  # rate(...) or cron(...)
    input: dict[str, Any] | None  # the rule target's constant Input: sent instead of the scheduled event


def schedules(template: dict[str, Any]) -> list[Schedule]:
    found = []
    for name, resource in _resources(template, "AWS::Serverless::Function").items():
        for event in resource["Properties"].get("Events", {}).values():
            if event.get("Type") == "Schedule":
                props = event["Properties"]
                constant = json.loads(props["Input"]) if props.get("Input") else None
                found.append(Schedule(name, props["Schedule"], constant))
    return found


def tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """CreateTable requests from the template's own definitions (named by logical id)."""
    requests = {}
    for name, resource in _resources(template, "AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("StreamSpecification"):
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        requests[name] = {"create": request, "ttl": props.get("TimeToLiveSpecification")}
    return requests


def resolve_environment(function: Function, parameters: dict[str, str]) -> dict[str, str]:
    """A function's environment with !Ref to tables as their local names and to parameters as given."""
    template_tables = set(tables(load_template()))
    resolved = {}
    for key, value in function.environment.items():
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            resolved[key] = ref if ref in template_tables else parameters.get(ref, "")
        elif isinstance(value, dict):
            resolved[key] = ""  # other intrinsics (KMS key ARN...) have no local meaning
        else:
            resolved[key] = str(value)
    return resolved


@dataclass(frozen=True)
class StreamMapping:
    """A function's DynamoDB Streams event source mapping, as template.yaml declares it."""

    function: str
    table: str  # logical id (the local table name)
    batch_size: int
    maximum_retry_attempts: int
    bisect_on_error: bool
    report_item_failures: bool
    filters: tuple[dict[str, Any], ...]


def stream_mappings(template: dict[str, Any]) -> list[StreamMapping]:
    import json

    found = []
    for name, resource in _resources(template, "AWS::Serverless::Function").items():
        for event in resource["Properties"].get("Events", {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            props = event["Properties"]
            table = props["Stream"]["Fn::GetAtt"][0]
            patterns = props.get("FilterCriteria", {}).get("Filters", [])
            found.append(
                StreamMapping(
                    function=name,
                    table=table,
                    batch_size=int(props.get("BatchSize", 100)),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
                    report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                    filters=tuple(json.loads(f["Pattern"]) for f in patterns),
                )
            )
    return found
