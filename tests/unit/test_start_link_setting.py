"""START_LINK_SECONDS reaches both functions from template.yaml (a stack parameter, default 120), as the local
runner resolves it, and the settings read it."""

from __future__ import annotations

from calendar_connect.settings import Settings
from local.template import functions, load_template, resolve_environment


def test_both_functions_get_the_start_link_window_from_the_template():
    template = load_template()
    parameters = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    assert parameters["StartLinkSeconds"] == "120"
    for name in ("InitiateFunction", "CallbackFunction"):
        environment = resolve_environment(functions(template)[name], parameters)
        assert environment["START_LINK_SECONDS"] == "120", name
        settings = Settings.model_validate({**environment, "START_LINK_SECONDS": "45"})
        assert settings.start_link_seconds == 45


def test_the_window_defaults_to_120_seconds_when_unset():
    settings = Settings.model_validate({"PENDING_TABLE": "p", "CONNECTIONS_TABLE": "c", "API_CLIENTS_TABLE": "a"})
    assert settings.start_link_seconds == 120
