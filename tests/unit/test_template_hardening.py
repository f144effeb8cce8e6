"""template.yaml's edge defences, read from the template itself (make template runs cfn-lint and checkov on it)."""

from __future__ import annotations

import re
from typing import Any

from local.template import load_template


def _resources(kind: str) -> dict[str, Any]:
    return {name: r for name, r in load_template()["Resources"].items() if r["Type"] == kind}


def test_every_route_is_throttled_at_the_stage() -> None:
    (api,) = _resources("AWS::Serverless::HttpApi").values()
    settings = api["Properties"]["DefaultRouteSettings"]
    assert 0 < settings["ThrottlingRateLimit"] <= settings["ThrottlingBurstLimit"]


def test_access_logs_carry_no_query_string() -> None:
    # Callbacks carry codes and states in the query; only the path may be logged.
    (api,) = _resources("AWS::Serverless::HttpApi").values()
    log_format = api["Properties"]["AccessLogSettings"]["Format"]
    variables = set(re.findall(r"\$context\.([A-Za-z.]+)", log_format))
    assert "path" in variables
    assert not {v for v in variables if re.search(r"query|requestUri|overrides|authorizer", v, re.IGNORECASE)}


def test_every_function_log_group_has_a_bounded_retention() -> None:
    groups = _resources("AWS::Logs::LogGroup").values()
    named = {str(g["Properties"].get("LogGroupName")) for g in groups if g["Properties"].get("RetentionInDays")}
    for function in _resources("AWS::Serverless::Function"):
        assert str({"Fn::Sub": f"/aws/lambda/${{{function}}}"}) in named, function


def test_every_checkov_suppression_says_why() -> None:
    for name, resource in load_template()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "")) > 20, f"{name}: {skip['id']} has no justification"


def test_tables_are_encrypted_and_pending_items_expire() -> None:
    tables = _resources("AWS::DynamoDB::Table")
    assert all(t["Properties"]["SSESpecification"]["SSEEnabled"] for t in tables.values())
    ttl = tables["PendingAuthorizationsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expiresAt", "Enabled": True}


def test_data_outlives_the_stack() -> None:
    # `sam delete` or a replacing update must not take connections (or the key that decrypts them) with it.
    kept = {**_resources("AWS::DynamoDB::Table"), "TokenKey": _resources("AWS::KMS::Key")["TokenKey"]}
    assert set(kept) == {
        "PendingAuthorizationsTable",
        "ConnectionsTable",
        "ApiClientsTable",
        "WebhookDeliveriesTable",
        "TokenKey",
    }
    for name, resource in kept.items():
        assert resource.get("DeletionPolicy") == "Retain", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_custom_domain_is_optional_and_the_callback_url_follows_it() -> None:
    template = load_template()
    assert template["Conditions"]["HasCustomDomain"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]}
    domain = template["Resources"]["ApiDomainName"]
    mapping = template["Resources"]["ApiDomainMapping"]
    assert domain["Condition"] == mapping["Condition"] == "HasCustomDomain"
    assert domain["Properties"]["DomainNameConfigurations"][0]["CertificateArn"] == {"Ref": "CertificateArn"}
    assert mapping["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    # The URL the functions build callbacks from and the one the deployer registers are the same, in every case.
    public_base_url = template["Globals"]["Function"]["Environment"]["Variables"]["PUBLIC_BASE_URL"]
    assert public_base_url == {
        "Fn::If": ["HasCustomDomain", {"Fn::Sub": "https://${DomainName}"}, {"Ref": "PublicBaseUrl"}]
    }
    callback = template["Outputs"]["CallbackUrl"]["Value"]["Fn::If"]
    assert callback[0] == "HasCustomDomain"
    assert callback[1] == {"Fn::Sub": "https://${DomainName}/oauth2/callback"}
    otherwise = callback[2]["Fn::If"]
    assert otherwise[0] == "HasPublicBaseUrl"
    assert otherwise[1] == {"Fn::Sub": "${PublicBaseUrl}/oauth2/callback"}
    assert otherwise[2]["Fn::Sub"].startswith("https://${HttpApi}.execute-api.")
    assert otherwise[2]["Fn::Sub"].endswith("/oauth2/callback")


def test_oauth_clients_are_not_template_parameters() -> None:
    # Client ids live with the provider's configuration (the client-secrets secret), so a provider is pure data.
    parameters = load_template()["Parameters"]
    assert not [name for name in parameters if "ClientId" in name]


def test_the_keepalive_function_finds_connections_through_its_index_only() -> None:
    # Least privilege: it may Query the keep-alive index, read and update single connections, and never Scan.
    function = _resources("AWS::Serverless::Function")["KeepAliveFunction"]
    statements = [
        s for policy in function["Properties"]["Policies"] if "Statement" in policy for s in policy["Statement"]
    ]
    actions = {a: s["Resource"] for s in statements for a in s["Action"]}
    assert "dynamodb:Scan" not in actions
    assert actions["dynamodb:Query"] == {"Fn::Sub": "${ConnectionsTable.Arn}/index/KeepAliveDue"}
    assert {a for a in actions if a.startswith("dynamodb:")} == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    }
    assert function["Properties"]["Timeout"] <= 900


def test_the_keepalive_schedules_cover_every_shard_exactly_once() -> None:
    # A shard no schedule names would never be refreshed; one named twice would be raced over every run.
    from calendar_connect.dal import KEEPALIVE_SHARDS
    from local.template import schedules

    groups = [s.input["shards"] for s in schedules(load_template()) if s.function == "KeepAliveFunction" and s.input]
    assert sorted(n for group in groups for n in group) == list(range(KEEPALIVE_SHARDS))
