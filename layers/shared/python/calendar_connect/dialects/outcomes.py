"""The outcome's own parameters, which every dialect words the same: `connectionId`, or `error` and `reason`."""

from __future__ import annotations


def outcome_params(outcome: dict[str, str]) -> list[tuple[str, str]]:
    if "connectionId" in outcome:
        return [("connectionId", outcome["connectionId"])]
    return [("error", outcome["error"]), ("reason", outcome["reason"])]
