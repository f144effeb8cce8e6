"""What template.yaml's alarms and dashboard read: every metric they name, with its dimensions.

A !Sub variable (${HttpApi}, ${Alarm.Arn}, ${AWS::Region}) reads as "<HttpApi>", "<Alarm.Arn>", "<AWS::Region>";
a !Ref in an alarm's dimension reads as "<HttpApi>" too. A SEARCH expression names its dimension keys without
values (None: any value).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")
_SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}([^']*)'")
_EQUALS = re.compile(r'(NOT\s+)?(\w+)="([^"]*)"')


def substitute(text: str) -> str:
    """!Sub's text with each variable as <name>, and each ${!literal} as ${literal}."""
    return _SUB_VARIABLE.sub(lambda m: "${" + m.group(2) + "}" if m.group(1) else f"<{m.group(2)}>", text)


def sub_variables(text: str) -> set[str]:
    return {name for literal, name in _SUB_VARIABLE.findall(text) if not literal}


@dataclass(frozen=True)
class MetricReference:
    where: str  # the alarm's logical id, or "dashboard: <widget title>"
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str | None], ...]  # sorted; None: any value (a SEARCH)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(key for key, _ in self.dimensions)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _value(value: Any) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    return str(value)


def alarm_references(template: dict[str, Any]) -> list[MetricReference]:
    found = []
    for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        if "MetricName" in props:
            stats.append(props)
        for metric in stats:
            dims = tuple(sorted((d["Name"], _value(d["Value"])) for d in metric.get("Dimensions", [])))
            found.append(MetricReference(name, metric["Namespace"], metric["MetricName"], dims))
    return found


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    return json.loads(substitute(dashboard["Properties"]["DashboardBody"]["Fn::Sub"]))


def dashboard_references(body: dict[str, Any]) -> list[MetricReference]:
    found = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        where = f"dashboard: {widget['properties']['title']}"
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                found.extend(_search_references(where, line[0]["expression"]))
                continue
            namespace, name, *rest = line
            pairs = [item for item in rest if not isinstance(item, dict)]
            dims = tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))
            found.append(MetricReference(where, namespace, name, dims))
    return found


def _search_references(where: str, expression: str) -> list[MetricReference]:
    found = []
    for schema, terms in _SEARCH.findall(expression):
        namespace, *keys = [part.strip() for part in schema.split(",")]
        values: dict[str, str | None] = dict.fromkeys(keys)
        name = None
        for negated, key, value in _EQUALS.findall(terms):
            if key == "MetricName":
                name = value
            elif not negated:
                assert key in values, f"{where}: {key} is not in the search's schema"
                values[key] = value
        assert name, f"{where}: a SEARCH without a MetricName"
        found.append(MetricReference(where, namespace, name, tuple(sorted(values.items()))))
    return found
