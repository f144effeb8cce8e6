"""The functions of template.yaml loaded as Lambda loads them, behind a WSGI API Gateway."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

from werkzeug.wrappers import Request, Response

from local.apigw import HttpRequest, HttpResponse, Router, build_event, internal_error, not_found, translate_answer
from local.template import Function, Route

LOCAL_REGION = "us-east-1"


def local_function_environment(dynamodb_endpoint: str) -> dict[str, str]:
    """What every function needs on this machine beside template.yaml's environment: DynamoDB Local and its
    credentials, a fresh token key (tokens stored by another process do not decrypt here), no X-Ray."""
    import base64
    import secrets

    from local.dynamodb import LOCAL_CREDENTIALS

    return {
        "DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "LOCAL_TOKEN_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


# One invocation at a time in this process, whoever invokes (the gateway, the stream readers, the schedules).
INVOKE_LOCK = threading.Lock()


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler (Powertools' inject_lambda_context reads these)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@dataclass
class LoadedFunction:
    name: str
    module: ModuleType
    handler_name: str
    memory_mb: int
    timeout_seconds: int

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.name, self.memory_mb, self.timeout_seconds)
        return getattr(self.module, self.handler_name)(event, context)


def load_function(function: Function, memory_mb: int = 128, timeout_seconds: int = 3) -> LoadedFunction:
    """The handler module from the function's own code directory (as /var/task), by file path.

    Every function names its module app.py, so each is loaded under a name of its own; its code
    directory leads sys.path while it imports, as /var/task leads it in Lambda. The layer (/opt/python
    in Lambda) must already be importable.
    """
    module_file, _, handler_name = function.handler.rpartition(".")
    path = function.code_dir / (module_file.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"lambda_{function.name}_{module_file}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{function.name}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(function.code_dir))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(function.code_dir))
    if not callable(getattr(module, handler_name, None)):
        raise RuntimeError(f"{function.name}: {function.handler} is not a function")
    return LoadedFunction(function.name, module, handler_name, memory_mb, timeout_seconds)


def http_request_from(request: Request) -> HttpRequest:
    environ = request.environ
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    raw_query = raw_uri.split("?", 1)[1] if "?" in raw_uri else environ.get("QUERY_STRING", "")
    return HttpRequest(
        method=request.method,
        path=request.path,
        raw_query=raw_query,
        headers=list(request.headers.items()),
        body=request.get_data(cache=False),
        source_ip=request.remote_addr or "127.0.0.1",
        protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
    )


# The flow's log line for an attempt's end (connect_flow._finished); its fields are the dashboard's dimensions.
ATTEMPT_FINISHED = "authorization finished"


class AttemptSummaries(logging.Handler):
    """`make run` prints one line per finished attempt, read from the flow's own log line: what CloudWatch
    would count (attempt id, provider, dialect, outcome, reason) and how long the person took."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != ATTEMPT_FINISHED:
            return
        from calendar_connect.observability import logger  # the functions' layer, importable once they are loaded

        line = json.loads(logger.registered_formatter.format(record))  # with the request's keys (attemptId)
        stream = self.stream or sys.stdout
        stream.write(
            f"attempt {line.get('attemptId', '-')}: {line.get('providerId')}/{line.get('dialect')} "
            f"{line.get('outcome')} ({line.get('reason')}) after {line.get('attemptSeconds')} s\n"
        )
        stream.flush()


def print_attempt_summaries(stream: TextIO | None = None) -> AttemptSummaries:
    """Install the summary on the functions' logger, once per process (None: this process's stdout)."""
    from calendar_connect.observability import logger

    for handler in logger.handlers:
        if isinstance(handler, AttemptSummaries):
            handler.stream = stream
            return handler
    summaries = AttemptSummaries(stream)
    logger.addHandler(summaries)
    return summaries


class Gateway:
    """WSGI app: route, build the event, invoke, translate the answer.

    Both functions share one process and therefore one copy of the layer's module state (its Logger,
    its resolver apps), so invocations run one at a time, as each Lambda container runs them.
    """

    def __init__(self, routes: list[Route], functions: dict[str, LoadedFunction], verbose_errors: bool = True):
        self.router = Router(routes)
        self.functions = functions
        self._invoke_lock = INVOKE_LOCK
        self.verbose_errors = verbose_errors
        print_attempt_summaries()

    def handle(self, request: HttpRequest) -> HttpResponse:
        match = self.router.match(request.method, request.path)
        if match is None:
            return not_found()
        event = build_event(request, match)
        function = self.functions[match.route.function]
        try:
            with self._invoke_lock:
                answer = function.invoke(event)
        except Exception:
            # Lambda logs the failure; API Gateway answers 500 without details.
            if self.verbose_errors:
                sys.stderr.write(f"{function.name} failed:\n{traceback.format_exc()}")
            return internal_error()
        return translate_answer(answer)

    def invoke_alone(self, function: LoadedFunction, event: dict[str, Any]) -> Any:
        """An invocation from outside HTTP (a schedule), one at a time with the HTTP ones."""
        with self._invoke_lock:
            return function.invoke(event)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        answer = self.handle(http_request_from(Request(environ)))
        response = Response(answer.body, answer.status)
        response.headers.clear()
        for name, value in answer.headers:
            response.headers.add(name, value)
        return response(environ, start_response)
