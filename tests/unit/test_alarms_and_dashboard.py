"""template.yaml alone gives a deployer the alarms, their topic, the dashboard and the saved queries.

Which metrics the functions emit is proven in tests/integration/test_metrics_emitted.py; here, the template's
own consistency: every alarm pages, every name the dashboard uses exists, every function and table is watched.
"""

from __future__ import annotations

import re

import pytest

from calendar_connect.observability import METRIC_DIMENSIONS
from local.template import ROOT, load_template
from tests.support.observability_template import (
    alarm_references,
    dashboard_body,
    dashboard_references,
    resources,
    sub_variables,
)

TEMPLATE = load_template()
ALARMS = resources(TEMPLATE, "AWS::CloudWatch::Alarm")
FUNCTIONS = resources(TEMPLATE, "AWS::Serverless::Function")
TABLES = resources(TEMPLATE, "AWS::DynamoDB::Table")
GLOBAL_ENV = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
SERVICE = GLOBAL_ENV["POWERTOOLS_SERVICE_NAME"]
NAMESPACE = GLOBAL_ENV["POWERTOOLS_METRICS_NAMESPACE"]
OURS = {**METRIC_DIMENSIONS, "ColdStart": (("function_name",),)}


def _alarms_on(namespace: str, metric: str, dimension: str, value: str) -> list[str]:
    return sorted(
        {
            ref.where
            for ref in alarm_references(TEMPLATE)
            if (ref.namespace, ref.name) == (namespace, metric) and (dimension, value) in ref.dimensions
        }
    )


def test_every_alarm_notifies_the_encrypted_topic_when_it_fires_and_when_it_clears():
    assert len(ALARMS) >= 12
    for name, alarm in ALARMS.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert "docs/operations.md" in alarm["Properties"]["AlarmDescription"], name
    topic = TEMPLATE["Resources"]["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = TEMPLATE["Resources"]["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    # CloudWatch can publish to the encrypted topic only if the key lets it
    grants = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert grants and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])


def test_an_optional_alarm_email_subscribes_to_the_topic():
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""
    subscription = TEMPLATE["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_has_error_throttle_and_duration_alarms(function):
    for metric in ("Errors", "Throttles", "Duration"):
        assert _alarms_on("AWS/Lambda", metric, "FunctionName", f"<{function}>"), f"{function}: no {metric} alarm"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_duration_alarm_fires_at_80_percent_of_the_functions_timeout(function):
    timeout = FUNCTIONS[function]["Properties"].get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
    (alarm,) = _alarms_on("AWS/Lambda", "Duration", "FunctionName", f"<{function}>")
    props = ALARMS[alarm]["Properties"]
    assert props["ExtendedStatistic"] == "p99"
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == 0.8 * timeout * 1000


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_has_a_throttle_alarm(table):
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        assert _alarms_on("AWS/DynamoDB", metric, "TableName", f"<{table}>"), f"{table}: no {metric} alarm"


def test_the_api_5xx_rate_alarm_reads_the_apis_errors_over_its_requests():
    (api,) = resources(TEMPLATE, "AWS::Serverless::HttpApi")
    [alarm] = _alarms_on("AWS/ApiGateway", "5xx", "ApiId", f"<{api}>")
    assert _alarms_on("AWS/ApiGateway", "Count", "ApiId", f"<{api}>") == [alarm]
    (expression,) = [m["Expression"] for m in ALARMS[alarm]["Properties"]["Metrics"] if "Expression" in m]
    assert "100 * FILL(errors, 0) / requests" in expression


@pytest.mark.parametrize("reason", ["token_exchange_failed", "provider_error"])
def test_a_provider_outage_alarms_on_its_reasons_share_of_finished_attempts(reason):
    [alarm] = _alarms_on(NAMESPACE, "AuthorizationFinished", "reason", reason)
    refs = [r for r in alarm_references(TEMPLATE) if r.where == alarm]
    assert {r.keys for r in refs} == {frozenset({"service", "reason"}), frozenset({"service"})}
    assert all(dict(r.dimensions)["service"] == SERVICE for r in refs)


def test_every_metric_of_ours_is_named_with_one_of_the_dimension_sets_it_is_emitted_with():
    # The integration test proves emission; this says each reference is to a declared metric and set.
    references = alarm_references(TEMPLATE) + dashboard_references(dashboard_body(TEMPLATE))
    ours = [r for r in references if r.namespace == NAMESPACE]
    assert {r.name for r in ours} >= {"AuthorizationStarted", "AuthorizationFinished", "ColdStart"}
    for ref in ours:
        assert ref.name in OURS, ref
        assert ref.keys in {frozenset({"service", *names}) for names in OURS[ref.name]}, ref
        assert dict(ref.dimensions)["service"] in (SERVICE, None), ref
    for ref in references:
        assert ref.namespace in (NAMESPACE, "AWS/Lambda", "AWS/DynamoDB", "AWS/ApiGateway"), ref


def test_the_dashboard_is_json_naming_only_resources_of_the_template():
    # Given the dashboard's body, a !Sub
    (dashboard,) = resources(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # Then every variable is a resource, a resource's attribute, or a pseudo parameter
    for variable in sub_variables(text):
        name, _, attribute = variable.partition(".")
        assert variable.startswith("AWS::") or name in TEMPLATE["Resources"], variable
        assert attribute in ("", "Arn"), variable
    # And it is JSON once substituted, with widgets
    body = dashboard_body(TEMPLATE)
    assert len(body["widgets"]) >= 10
    # And every resource it names by dimension exists: functions, tables, the API
    known = {f"<{name}>" for name in TEMPLATE["Resources"]}
    for ref in dashboard_references(body):
        for key, value in ref.dimensions:
            if key in ("FunctionName", "TableName", "ApiId", "function_name"):
                assert value in known, ref


def test_the_alarm_widget_lists_every_alarm():
    body = dashboard_body(TEMPLATE)
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"<{name}.Arn>" for name in ALARMS)


def test_the_dashboard_shows_latency_per_route_which_needs_the_apis_detailed_metrics():
    (api,) = resources(TEMPLATE, "AWS::Serverless::HttpApi").values()
    assert api["Properties"]["DefaultRouteSettings"]["DetailedMetricsEnabled"] is True
    refs = dashboard_references(dashboard_body(TEMPLATE))
    assert any(r.name == "Latency" and r.keys == {"ApiId", "Stage", "Route"} for r in refs)


def test_the_saved_queries_follow_an_attempt_count_failures_and_find_slow_requests():
    queries = {
        q["Properties"]["Name"]["Fn::Sub"].split("/", 1)[1]: q["Properties"]
        for q in resources(TEMPLATE, "AWS::Logs::QueryDefinition").values()
    }
    assert set(queries) == {"Follow one attempt", "Failures by reason, last hour", "Slowest requests"}
    groups = resources(TEMPLATE, "AWS::Logs::LogGroup")
    for query in queries.values():
        assert query["LogGroupNames"] and all(g["Ref"] in groups for g in query["LogGroupNames"])
    assert 'attemptId = "ATTEMPT_ID"' in queries["Follow one attempt"]["QueryString"]
    assert 'message = "authorization finished"' in queries["Failures by reason, last hour"]["QueryString"]
    assert "by reason" in queries["Failures by reason, last hour"]["QueryString"]
    assert "sort responseLatencyMs desc" in queries["Slowest requests"]["QueryString"]
    (api,) = resources(TEMPLATE, "AWS::Serverless::HttpApi").values()
    assert '"responseLatencyMs":"$context.responseLatency"' in api["Properties"]["AccessLogSettings"]["Format"]


def test_the_runbook_has_a_section_for_every_alarm_in_the_template():
    runbook = (ROOT / "docs" / "operations.md").read_text()
    sections = re.split(r"^(?=### )", runbook, flags=re.MULTILINE)
    for name in ALARMS:
        found = [section for section in sections if re.match(rf"### .*`{name}`", section)]
        assert found, f"docs/operations.md: no section for {name}"
        for part in ("**Means:**", "**First query:**", "**Usual causes:**", "**Fix:**"):
            assert part in found[0], f"docs/operations.md: {name}'s section has no {part}"
    for topic in ("put-secret-value", "rotation", "docs/webhooks.md", "scripts.clients", "revoke"):
        assert topic in runbook


KEEPALIVE_AND_WEBHOOKS = {
    "KeepAliveDue",
    "KeepAliveRefreshed",
    "KeepAliveFailed",
    "KeepAliveReauthRequired",
    "WebhookDelivered",
    "WebhookRetried",
    "WebhookDeadLettered",
    "WebhookLatency",
}


def test_the_keepalive_and_webhook_metrics_are_named_with_the_service_dimension_only():
    references = alarm_references(TEMPLATE) + dashboard_references(dashboard_body(TEMPLATE))
    named = [r for r in references if r.name in KEEPALIVE_AND_WEBHOOKS]
    assert {r.name for r in named} == KEEPALIVE_AND_WEBHOOKS
    for ref in named:
        assert (ref.namespace, ref.dimensions) == (NAMESPACE, (("service", SERVICE),)), ref


def test_webhook_dead_letters_and_the_streams_iterator_age_page():
    assert _alarms_on(NAMESPACE, "WebhookDeadLettered", "service", SERVICE) == ["WebhookDeadLettersAlarm"]
    dead = ALARMS["WebhookDeadLettersAlarm"]["Properties"]
    assert (dead["Threshold"], dead["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    (function,) = [
        name
        for name, f in FUNCTIONS.items()
        if any(e["Type"] == "DynamoDB" for e in f["Properties"].get("Events", {}).values())
    ]
    assert _alarms_on("AWS/Lambda", "IteratorAge", "FunctionName", f"<{function}>") == ["WebhookStreamIteratorAgeAlarm"]


def test_the_keepalive_not_running_alarm_counts_every_schedules_invocations():
    # Given the keep-alive's schedules, each every 15 minutes
    events = FUNCTIONS["KeepAliveFunction"]["Properties"]["Events"].values()
    schedules = [e["Properties"]["Schedule"] for e in events if e["Type"] == "Schedule"]
    assert schedules and set(schedules) == {"rate(15 minutes)"}
    per_hour = 4 * len(schedules)
    # Then the alarm fires when one schedule's four invocations an hour are missing, not only when all are
    props = ALARMS["KeepAliveNotRunningAlarm"]["Properties"]
    assert (props["MetricName"], props["Statistic"], props["Period"]) == ("Invocations", "Sum", 3600)
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert per_hour - 4 < props["Threshold"] <= per_hour
    assert props["TreatMissingData"] == "breaching"


def test_the_keepalive_failure_rate_is_failed_over_due_across_all_schedules_invocations():
    props = ALARMS["KeepAliveFailuresAlarm"]["Properties"]
    stats = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {"KeepAliveFailed", "KeepAliveDue"}
    # Sums over the same period of every invocation (each schedule's shards), never one invocation's share
    assert {(s["Stat"], s["Period"]) for s in stats.values()} == {("Sum", 3600)}
    (expression,) = [m["Expression"] for m in props["Metrics"] if "Expression" in m]
    assert "100 * FILL(failed, 0) / due" in expression
