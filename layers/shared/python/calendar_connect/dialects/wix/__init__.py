"""Wix External Calendars v2: its route and its outcome parameters (`?connectionId=` or `?error=&reason=`).

Its route, request and answer: wix/api.py.
"""

from __future__ import annotations

from ..outcomes import outcome_params

CONNECT_BY_OAUTH = "/v2/external-calendars/connections/connect-by-oauth"

__all__ = ["CONNECT_BY_OAUTH", "outcome_params"]
