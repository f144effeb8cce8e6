"""`python -m local.runner` (`make run`): the whole product on this machine.

DynamoDB Local with the template's tables, the dev API client, the sandbox provider, both functions
behind a local API Gateway on 127.0.0.1:$PORT, and the demo site at `/`. Ctrl-C stops it all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.demo import DEMO_PATHS, DemoSite
from local.dynamodb import DynamoDBLocal
from local.examples import EXAMPLE_API_KEY, EXAMPLE_CLIENT_ID, EXAMPLE_PREFIX
from local.gateway import INVOKE_LOCK, LOCAL_REGION, Gateway, LoadedFunction, load_function, local_function_environment
from local.sandbox_provider import SandboxClient, SandboxProvider
from local.schedule import ScheduledJob
from local.serving import ServerThread
from local.template import (
    ROOT,
    functions,
    load_template,
    resolve_environment,
    routes,
    schedules,
    stream_mappings,
    tables,
)
from local.webhooks import LocalWebhooks

SANDBOX_ID = "sandbox"
SANDBOX_CLIENT_ID = "calendar-connect-local"
SANDBOX_SECRET_VARIABLE = "SANDBOX_CLIENT_SECRET"
DEV_CLIENT_NAME = "Local dev client"
EXAMPLE_CLIENT_NAME = "Event files (events/, make invoke)"
KEEPALIVE_FUNCTION = "KeepAliveFunction"


_KEEPALIVE_COUNTS = ("due", "refreshed", "reauth_required", "failed")


def describe_keepalive_run(summaries: list[dict[str, Any]]) -> str:
    """One line for a run: the counts of its invocations (one per schedule in template.yaml), added up."""
    line = ", ".join(f"{sum(s[k] for s in summaries)} {k.replace('_', ' ')}" for k in _KEEPALIVE_COUNTS)
    return line + (" (stopped early: the rest stays due)" if any(s.get("stopped_early") for s in summaries) else "")


@dataclass(frozen=True)
class RunnerSettings:
    """The runner's settings, from the environment (README "Running locally")."""

    port: int = 3000
    dynamodb_port: int = 8000
    sandbox_port: int = 0  # 0: any free port
    api_key: str | None = None  # None: a random key
    redirect_prefixes: tuple[str, ...] = ()  # empty: http://127.0.0.1:$PORT/
    providers_file: str = ""
    public_base_url: str = ""  # empty: http://127.0.0.1:$PORT
    sandbox_access_token_seconds: int = 3600
    keepalive_seconds: int = 60  # how often the keep-alive job runs; 0: never
    quiet: bool = False  # no access log (tests keep their output short)
    webhook_url: str = ""  # empty: the demo site's own receiver
    webhook_secret: str = ""  # empty: a new one
    webhook_retry_seconds: int = 5  # how often the retry function runs locally (every minute in AWS)
    extra_environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> RunnerSettings:
        def number(name: str, default: int) -> int:
            value = environ.get(name, "").strip()
            if not value:
                return default
            if not value.isdigit():
                raise SystemExit(f"{name} must be a number, not {value!r}")
            return int(value)

        prefixes = tuple(p.strip() for p in environ.get("LOCAL_REDIRECT_PREFIXES", "").split(",") if p.strip())
        return cls(
            port=number("PORT", 3000),
            dynamodb_port=number("DYNAMODB_PORT", 8000),
            sandbox_port=number("SANDBOX_PORT", 0),
            api_key=environ.get("LOCAL_API_KEY", "").strip() or None,
            redirect_prefixes=prefixes,
            providers_file=environ.get("PROVIDERS_FILE", "").strip(),
            public_base_url=environ.get("PUBLIC_BASE_URL", "").strip().rstrip("/"),
            sandbox_access_token_seconds=number("SANDBOX_ACCESS_TOKEN_SECONDS", 3600),
            keepalive_seconds=number("LOCAL_KEEPALIVE_SECONDS", 60),
            quiet=environ.get("LOCAL_QUIET", "") in ("1", "true"),
            webhook_url=environ.get("LOCAL_WEBHOOK_URL", "").strip(),
            webhook_secret=environ.get("LOCAL_WEBHOOK_SECRET", "").strip(),
            webhook_retry_seconds=number("LOCAL_WEBHOOK_RETRY_SECONDS", 5),
        )


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # As the servers bind: a port held only by TIME_WAIT sockets of a runner just stopped is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _layer_dirs(template: dict[str, Any]) -> list[Path]:
    """Each layer's python/ directory: what Lambda mounts as /opt/python."""
    return [
        ROOT / resource["Properties"]["ContentUri"] / "python"
        for resource in template["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    ]


def sandbox_provider_entry(issuer: str) -> dict[str, Any]:
    """The sandbox's provider entry (local runner only). Its secret is named, never written."""
    return {
        SANDBOX_ID: {
            "name": "Sandbox Calendar (local)",
            "calendar_type": "SANDBOX",
            "calendar_source": "SANDBOX",
            "connect_methods": ["OAUTH"],
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "revocation_endpoint": f"{issuer}/revoke",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "scopes": ["openid", "email", "calendar"],
            "required_scopes": ["calendar"],
            "token_endpoint_auth_method": "client_secret_post",
            "pkce": True,
            "timeout_seconds": 600,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": {"env": SANDBOX_SECRET_VARIABLE},
            "account_id_claims": ["sub"],
            "email_claims": ["email"],
        }
    }


class _Dispatcher:
    """The demo site owns `/` and `/demo/*`; everything else goes to the gateway."""

    def __init__(self) -> None:
        self.gateway: Any = None
        self.demo: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO") or "/"
        target = self.demo if path in DEMO_PATHS else self.gateway
        return target(environ, start_response)


class LocalStack:
    """Everything `make run` starts, startable and stoppable from Python.

    It sets the functions' environment in this process (they run in it), so one LocalStack per
    process at a time; tests run it as a subprocess (`python -m local.runner`).
    """

    def __init__(self, settings: RunnerSettings | None = None) -> None:
        self.settings = settings or RunnerSettings()
        self.dynamodb: DynamoDBLocal | None = None
        self.sandbox: SandboxProvider | None = None
        self.functions: dict[str, LoadedFunction] = {}
        self.api_key = ""
        self.base_url = ""
        self.public_base_url = ""
        self.sandbox_url = ""
        self.providers_file = ""
        self.demo: DemoSite | None = None
        self.webhooks: LocalWebhooks | None = None
        self.webhook_url = ""
        self._servers: list[ServerThread] = []
        self.keepalive: ScheduledJob | None = None
        self._workdir: Path | None = None
        self._saved_environ: dict[str, str] | None = None

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings = self.settings
        template = load_template()
        for layer in _layer_dirs(template):
            if str(layer) not in sys.path:
                sys.path.insert(0, str(layer))
        from calendar_connect.routes import CALLBACK  # the layer's, now on the path

        if not _port_is_free(settings.dynamodb_port):
            raise RuntimeError(
                f"DYNAMODB_PORT {settings.dynamodb_port} is in use: stop what uses it or set DYNAMODB_PORT"
            )
        dispatcher = _Dispatcher()
        api_server = ServerThread(dispatcher, settings.port, name="api", quiet=settings.quiet)
        self._servers.append(api_server)
        self.base_url = api_server.url
        self.public_base_url = settings.public_base_url or self.base_url

        self.dynamodb = DynamoDBLocal(settings.dynamodb_port).start()
        self.dynamodb.create_tables()

        sandbox_secret = secrets.token_urlsafe(32)
        sandbox_holder: dict[str, SandboxProvider] = {}
        sandbox_server = ServerThread(
            lambda environ, start_response: sandbox_holder["app"](environ, start_response),
            settings.sandbox_port,
            name="sandbox",
            quiet=settings.quiet,
        )
        self._servers.append(sandbox_server)
        self.sandbox_url = sandbox_server.url
        self.sandbox = SandboxProvider(
            self.sandbox_url,
            [SandboxClient(SANDBOX_CLIENT_ID, sandbox_secret, (self.public_base_url + CALLBACK,))],
            access_token_seconds=settings.sandbox_access_token_seconds,
        )
        sandbox_holder["app"] = self.sandbox

        self._workdir = Path(tempfile.mkdtemp(prefix="calendar-connect-local-"))
        sandbox_file = self._workdir / "sandbox-provider.yaml"
        sandbox_file.write_text(yaml.safe_dump(sandbox_provider_entry(self.sandbox_url), sort_keys=False))
        # The sandbox comes first, so a user's file may still override it.
        self.providers_file = ",".join(filter(None, [str(sandbox_file), settings.providers_file]))

        self._set_environment(template, sandbox_secret)

        from calendar_connect import deployment
        from calendar_connect.api_clients import register_client

        deployment.reset()
        prefixes = list(settings.redirect_prefixes) or [self.base_url + "/"]
        dev_client, self.api_key = register_client(
            deployment.current().storage.api_clients, DEV_CLIENT_NAME, prefixes, settings.api_key
        )
        # The public example key of events/, so `make invoke` can replay those files against this database
        # (unless LOCAL_API_KEY made that very key the dev key).
        if dev_client.clientId != EXAMPLE_CLIENT_ID:
            register_client(
                deployment.current().storage.api_clients, EXAMPLE_CLIENT_NAME, [EXAMPLE_PREFIX], EXAMPLE_API_KEY
            )
        deployment.current().providers  # noqa: B018 - read every provider file now: a bad one fails at start

        for name, function in functions(template).items():
            props = template["Resources"][name]["Properties"]
            defaults = template.get("Globals", {}).get("Function", {})
            self.functions[name] = load_function(
                function,
                memory_mb=int(props.get("MemorySize", defaults.get("MemorySize", 128))),
                timeout_seconds=int(props.get("Timeout", defaults.get("Timeout", 3))),
            )
        gateway = Gateway(routes(template), self.functions)
        clashes = [r for r in gateway.router.routes if r.path in DEMO_PATHS]
        if clashes:
            raise RuntimeError(f"template routes {clashes} clash with the demo site's paths {DEMO_PATHS}")
        self.demo = DemoSite(self.base_url, self.api_key, self.base_url + "/")
        dispatcher.gateway = gateway
        dispatcher.demo = self.demo

        sandbox_server.start()
        api_server.start()
        keepalive_inputs = [s.input for s in schedules(template) if s.function == KEEPALIVE_FUNCTION]
        if settings.keepalive_seconds and keepalive_inputs:
            # As its EventBridge schedules would (each passes its Input, or else the scheduled event), one after
            # the other and serialised with the API's invocations: one process, one copy of the layer.
            keepalive = self.functions[KEEPALIVE_FUNCTION]
            self.keepalive = ScheduledJob(
                "keep-alive",
                lambda event: [gateway.invoke_alone(keepalive, given or event) for given in keepalive_inputs],
                settings.keepalive_seconds,
                describe_keepalive_run,
            ).start()
        self._start_webhooks(template, dev_client)

    def _start_webhooks(self, template: dict[str, Any], dev_client: Any) -> None:
        """The dev client's webhook (LOCAL_WEBHOOK_URL, else the demo's own receiver), and its delivery."""
        from calendar_connect import deployment, webhooks
        from calendar_connect.errors import ApiError

        assert self.demo is not None and self.dynamodb is not None
        settings = self.settings
        if settings.webhook_url or settings.webhook_secret:
            self.webhook_url = settings.webhook_url or self.demo.webhook_url
            try:
                secret = webhooks.check_secret(settings.webhook_secret) if settings.webhook_secret else None
            except ValueError as error:
                raise ValueError(f"LOCAL_WEBHOOK_SECRET: {error}") from None
            try:
                answer = webhooks.put_webhook(deployment.current(), dev_client, self.webhook_url, secret=secret)
            except ApiError as error:
                raise ValueError(f"LOCAL_WEBHOOK_URL: {error.description}") from None
            if not settings.webhook_url and answer.secret:
                self.demo.use_webhook_secret(answer.secret)
        else:
            self.demo.register_webhook()  # through the API, as a website would
            self.webhook_url = self.demo.webhook_url
        self.webhooks = LocalWebhooks(
            self.dynamodb.endpoint,
            stream_mappings(template),
            [s for s in schedules(template) if s.function != KEEPALIVE_FUNCTION],  # keep-alive runs on its own timer
            self._invoke,
            settings.webhook_retry_seconds,
            LOCAL_REGION,
        ).start()

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        with INVOKE_LOCK:
            return self.functions[function].invoke(event)

    def dead_child(self) -> str | None:
        """What this stack started that has stopped by itself, said for a person; None while everything runs."""
        if self.dynamodb is not None and self.dynamodb.exit_code is not None:
            return f"DynamoDB Local ({self.dynamodb.endpoint}) exited with code {self.dynamodb.exit_code}"
        for server in self._servers:
            if server.started and not server.running:
                return f"the {server.name} server ({server.url}) stopped"
        return None

    def _set_environment(self, template: dict[str, Any], sandbox_secret: str) -> None:
        """What template.yaml gives the functions, plus what only the embedded default needs."""
        parameters = {name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()}
        parameters["PublicBaseUrl"] = self.public_base_url
        environment: dict[str, str] = {}
        for function in functions(template).values():
            resolved = resolve_environment(function, parameters)
            clashes = {k for k in resolved if k in environment and environment[k] != resolved[k]}
            if clashes:
                raise RuntimeError(
                    f"functions need different values of {sorted(clashes)}; one process cannot host both"
                )
            environment.update(resolved)
        assert self.dynamodb is not None
        environment.update(
            {
                "ALLOW_PRIVATE_WEBHOOKS": "true",  # webhook receivers here are on this machine
                "PROVIDERS_FILE": self.providers_file,
                # The template computes it from DomainName/PublicBaseUrl (an !If); here it is this runner's URL.
                "PUBLIC_BASE_URL": self.public_base_url,
                **local_function_environment(self.dynamodb.endpoint),  # a fresh token key per run
                SANDBOX_SECRET_VARIABLE: sandbox_secret,
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "1"),
                **self.settings.extra_environment,
            }
        )
        environment.pop("AWS_SESSION_TOKEN", None)
        assert set(tables(template)) >= {
            environment[k] for k in ("PENDING_TABLE", "CONNECTIONS_TABLE", "API_CLIENTS_TABLE")
        }
        self._saved_environ = dict(os.environ)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(environment)

    def stop(self) -> None:
        """Stop everything this stack started (safe to call twice, or after a failed start)."""
        for loop in (self.webhooks, self.keepalive):
            if loop is not None:
                loop.stop()
        self.webhooks = self.keepalive = None
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self.demo is not None:
            self.demo.close()
            self.demo = None
        if self.dynamodb is not None:
            self.dynamodb.stop()
            self.dynamodb = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
            from calendar_connect import deployment

            deployment.reset()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _banner(stack: LocalStack) -> str:
    from calendar_connect.routes import CALLBACK  # the layer is on the path once the stack has started

    assert stack.dynamodb is not None
    return "\n".join(
        [
            "",
            f"Calendar Connect is running on {stack.base_url}",
            f"  demo:            {stack.base_url}/",
            f"  API:             {stack.base_url}/v2/external-calendars/...",
            f"  OAuth callback:  {stack.public_base_url}{CALLBACK}",
            f"  sandbox provider {stack.sandbox_url} (provider id {SANDBOX_ID})",
            f"  DynamoDB Local   {stack.dynamodb.endpoint}",
            f"  dev API key:     {stack.api_key}",
            f"  dev webhook:     {stack.webhook_url} (events from the tables' streams, signed)",
            f"  keep-alive job:  every {stack.settings.keepalive_seconds} s (LOCAL_KEEPALIVE_SECONDS)"
            if stack.keepalive
            else "  keep-alive job:  off (LOCAL_KEEPALIVE_SECONDS=0)",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main() -> int:
    # Powertools warns on every invocation that publishes no metrics; locally that is every one.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        settings = RunnerSettings.from_environ()
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    stack = LocalStack(settings)
    try:
        stack.start()
    except (RuntimeError, ValueError, OSError) as error:
        print(f"local runner: could not start: {error}", file=sys.stderr)
        return 1
    code = 0
    try:
        print(_banner(stack), flush=True)
        # Watch the children: a dead DynamoDB Local would otherwise leave every request answering 503.
        while not stop.wait(0.5):
            dead = stack.dead_child()
            if dead:
                print(f"local runner: {dead}; stopping everything", file=sys.stderr, flush=True)
                code = 1
                break
    finally:
        print("Stopping...", file=sys.stderr, flush=True)
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
