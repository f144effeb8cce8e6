"""TeamUp `oauth2/initiate`: its route and its outcome parameters (a leading `success=1` or `success=0`).

Its route, body parsing, request and answers (JSON or XML): teamup/api.py.
"""

from __future__ import annotations

from .. import outcomes

INITIATE = "/api/v2/external_calendars/accounts/oauth2/initiate"


def outcome_params(outcome: dict[str, str]) -> list[tuple[str, str]]:
    return [("success", "1" if "connectionId" in outcome else "0"), *outcomes.outcome_params(outcome)]
