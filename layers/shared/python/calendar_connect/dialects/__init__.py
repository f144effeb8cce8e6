"""The published dialects, at the function edge: the flow below knows none of them, only an opaque label.

Cheap to import, as the callback renders outcomes with it: each dialect's package holds its outcome parameters and
route path, its `api` module (InitiateFunction only) its route, request and answer models, and field names in errors.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from ..return_urls import with_outcome
from . import outcomes, teamup, wix


class Dialect(StrEnum):
    """A dialect's label: kept on the attempt for the callback, and the `dialect` metric dimension's only values."""

    WIX = "wix"
    TEAMUP = "teamup"


_OUTCOME_PARAMS: dict[str, Callable[[dict[str, str]], list[tuple[str, str]]]] = {
    Dialect.WIX: wix.outcome_params,
    Dialect.TEAMUP: teamup.outcome_params,
}


def outcome_url(dialect: str, return_url: str, outcome: dict[str, str]) -> str:
    """The return URL with an attempt's outcome, worded in the dialect the attempt was started in; a label this code
    does not know (an attempt started by a newer version, before a rollback) gets the outcome's own parameters, so
    that a connection already made still reaches the website."""
    return with_outcome(return_url, _OUTCOME_PARAMS.get(dialect, outcomes.outcome_params)(outcome))
