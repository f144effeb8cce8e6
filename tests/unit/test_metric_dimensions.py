"""Metrics carry bounded dimensions only: each value from a fixed list, never an id (one CloudWatch metric each)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from calendar_connect import observability
from calendar_connect.dialects import Dialect
from calendar_connect.observability import (
    AUTHORIZATION_FINISHED,
    DIALECTS,
    METRIC_DIMENSIONS,
    OUTCOMES,
    REASONS,
    UNLISTED,
    attempt_id,
    count,
    dimension_value,
)

LAYER = Path(observability.__file__).parent
PROVIDERS = ("google", "microsoft")


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The EMF lines printed so far, parsed (metrics enabled, as in Lambda)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "calendar-connect")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CalendarConnect")

    def read() -> list[dict[str, Any]]:
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"_aws"')]

    return read


def test_a_count_is_one_emf_line_with_its_dimensions_and_their_rollups(emitted):
    # When an attempt's end is counted
    count(
        AUTHORIZATION_FINISHED,
        known_providers=PROVIDERS,
        provider="google",
        dialect="wix",
        outcome="internal",
        reason="token_exchange_failed",
    )
    # Then one EMF line carries it, in the CalendarConnect namespace
    [line] = emitted()
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CalendarConnect"
    assert directive["Metrics"] == [{"Name": "AuthorizationFinished", "Unit": "Count"}]
    assert line["AuthorizationFinished"] == [1.0]
    # And its dimension values, and every dimension set: the full one and the roll-ups, each with the service
    assert {k: line[k] for k in ("service", "provider", "dialect", "outcome", "reason")} == {
        "service": "calendar-connect",
        "provider": "google",
        "dialect": "wix",
        "outcome": "internal",
        "reason": "token_exchange_failed",
    }
    assert [set(names) for names in directive["Dimensions"]] == [
        {"service", *names} for names in METRIC_DIMENSIONS[AUTHORIZATION_FINISHED]
    ]


@pytest.mark.parametrize("name", ["provider", "dialect", "outcome", "reason"], ids=lambda name: f"{name} given an id")
@pytest.mark.parametrize(
    "an_id",
    [str(uuid.uuid4()), attempt_id("9f" * 32), "example01", "schedule-42", "person@example.com"],
)
def test_an_id_never_becomes_a_dimension_value(emitted, name, an_id):
    # Given an attempt's end where one dimension was handed an id instead of a listed value
    dimensions = {"provider": "google", "dialect": "wix", "outcome": "reject", "reason": "access_denied"}
    dimensions[name] = an_id
    # When it is counted
    count(AUTHORIZATION_FINISHED, known_providers=PROVIDERS, **dimensions)
    # Then the id appears nowhere in the EMF line: that dimension says "unlisted"
    [line] = emitted()
    assert an_id not in json.dumps(line)
    assert line[name] == UNLISTED


def test_a_provider_is_a_dimension_only_when_the_deployment_configures_it():
    assert dimension_value("provider", "google", PROVIDERS) == "google"
    assert dimension_value("provider", "generic", PROVIDERS) == UNLISTED


def test_a_dimension_outside_a_metrics_own_set_is_refused(emitted):
    with pytest.raises(ValueError, match="takes the dimensions"):
        count(AUTHORIZATION_FINISHED, known_providers=PROVIDERS, provider="google")
    with pytest.raises(ValueError, match="takes the dimensions"):
        count("AccessTokenServed", known_providers=PROVIDERS, provider="google", connectionId="c-1")
    with pytest.raises(ValueError, match="not a dimension of ours"):
        dimension_value("connectionId", "c-1", PROVIDERS)
    assert emitted() == []


def test_nothing_is_printed_when_metrics_are_disabled(emitted, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    count("AccessTokenServed", known_providers=PROVIDERS, provider="google")
    assert emitted() == []


def test_the_lists_hold_every_outcome_and_reason_the_code_can_answer():
    # Every (error, reason) the flow and the built-in providers produce is a listed value, so none is "unlisted".
    source = "\n".join(path.read_text() for path in LAYER.glob("*.py"))
    pairs = set(re.findall(r'(?:AuthorizationFailure|_failure)\("(\w+)", "(\w+)"\)', source))
    built_in = yaml.safe_load((LAYER / "providers.yaml").read_text())
    for entry in built_in.values():
        pairs |= {tuple(pair) for pair in (entry.get("error_codes") or {}).values()}
    assert len(pairs) > 10
    assert {error for error, _ in pairs} <= OUTCOMES
    assert {reason for _, reason in pairs} <= REASONS
    assert {d.value for d in Dialect} == DIALECTS


def test_the_attempt_id_names_one_attempt_and_reveals_nothing_of_its_state_hash():
    # The same id wherever the attempt is met (logs, webhooks), one per attempt, and no piece of the pending
    # item's key: a one-way function of it.
    state_hash = "0123456789abcdef" + "f" * 48
    assert attempt_id(state_hash) == attempt_id(state_hash)
    assert re.fullmatch(r"att_[0-9a-f]{32}", attempt_id(state_hash))
    assert attempt_id(state_hash) != attempt_id("f" * 64)
    assert "0123456789abcdef" not in attempt_id(state_hash)
