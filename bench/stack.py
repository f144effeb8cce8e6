"""What the benchmark runs against: DynamoDB Local, the local token server, and a function's environment."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local.dynamodb import DynamoDBLocal
from local.template import ROOT
from tests.support.environment import function_environment, write_providers_file
from tests.support.provider_server import ProviderServer

GOOGLE_CLIENT_ID = "1234567890-bench.apps.googleusercontent.com"
LAYER_PATH = ROOT / "layers" / "shared" / "python"


@dataclass
class Stack:
    dynamodb: DynamoDBLocal
    provider: ProviderServer
    env: dict[str, str]

    def child_env(self) -> dict[str, str]:
        """A fresh interpreter's environment: the functions' variables, the layer on the path as /opt/python."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")}
        return {**keep, **self.env, "PYTHONPATH": os.pathsep.join([str(LAYER_PATH), str(ROOT)])}


def _environment(dynamodb: DynamoDBLocal, provider: ProviderServer, directory: Path) -> dict[str, str]:
    """The tests' environment (tests/support/environment.py) with the benchmark's clients, logging at WARNING."""
    return function_environment(
        dynamodb_endpoint=dynamodb.endpoint,
        providers_file=write_providers_file(directory / "providers.bench.yaml", provider),
        google_client_id=GOOGLE_CLIENT_ID,
        google_client_secret="google-bench-client-secret",
        microsoft_client_id="6731de76-14a6-49ae-97bc-6eba6914391e",
        microsoft_client_secret="microsoft-bench-client-secret",
        log_level="WARNING",
    )


@contextmanager
def local_stack() -> Iterator[Stack]:
    """Start DynamoDB Local (tables from template.yaml) and the token server; this process gets their environment."""
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as directory, DynamoDBLocal() as dynamodb:
        dynamodb.create_tables()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per token request otherwise
        provider = ProviderServer().start()
        try:
            env = _environment(dynamodb, provider, Path(directory))
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                from calendar_connect import deployment

                deployment.reset()
                _register_event_client()
                yield Stack(dynamodb, provider, env)
            finally:
                os.environ.clear()
                os.environ.update(saved)
        finally:
            provider.stop()


def _register_event_client() -> None:
    """The API client whose key the files in events/ carry."""
    from calendar_connect import deployment
    from calendar_connect.api_clients import register_client
    from tests.support.lambda_runtime import EXAMPLE_API_KEY, EXAMPLE_PREFIX

    register_client(deployment.current().storage.api_clients, "bench", [EXAMPLE_PREFIX], api_key=EXAMPLE_API_KEY)
