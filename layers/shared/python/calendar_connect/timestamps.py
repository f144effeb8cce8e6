"""Times as the API and the records write them: ISO 8601, UTC, to the second."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch_seconds: int | float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
