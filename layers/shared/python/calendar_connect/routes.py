"""Every route's path but the dialects' own (dialects/*/__init__.py), written once.

The functions route by these, the flow builds its browser URLs from them, the local runner registers the callback
with its sandbox provider, and tests/unit/test_dialects_at_the_edge.py holds template.yaml's HttpApi events to them.
Path parameters in Powertools' `<name>`. The demo site (local/demo.py) writes the paths as a website would.
"""

from __future__ import annotations

# The browser's (CallbackFunction)
START = "/oauth2/start"
CALLBACK = "/oauth2/callback"

# The management API's (InitiateFunction), besides each dialect's initiate route
PROVIDERS = "/v2/external-calendars/providers"
CONNECTIONS = "/v2/external-calendars/connections"
CONNECTION = CONNECTIONS + "/<connectionId>"
ACCESS_TOKEN = CONNECTION + "/access-token"
WEBHOOK = "/v2/external-calendars/webhook"
ROTATE_WEBHOOK_SECRET = WEBHOOK + "/rotate-secret"


def connection_path(connection_id: str) -> str:
    """A connection's path with its id, already percent-encoded by the caller."""
    return CONNECTION.replace("<connectionId>", connection_id)
