"""The one place that owns the Logger, Tracer and Metrics; everything else imports them from here."""

import hashlib
import logging
import os
import warnings
from collections.abc import Collection

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from .dialects import Dialect

logger = Logger()
# Not auto_patch: it patches every library the X-Ray SDK knows that is installed, importing each one (httpx
# among them, ~15 ms of a cold start). botocore now; httpx when the first provider call creates its client.
tracer = Tracer(auto_patch=False)
tracer.patch(["botocore"])
# The template sets the namespace; the default keeps a function that runs without it (env.json alone, a script)
# from failing on Powertools' cold-start count, which it publishes even with metrics disabled.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "CalendarConnect")
# Counts with their own dimensions are flushed one by one (count below), so many invocations leave the shared
# set empty; Powertools would warn about that on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# At DEBUG these libraries log whole requests and answers: PKCE verifiers on their way to DynamoDB,
# KMS data keys in plaintext. They stay at WARNING whatever level the function logs at.
for _wire_logger in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
    logging.getLogger(_wire_logger).setLevel(logging.WARNING)

# --- metrics with bounded dimensions ----------------------------------------------------------------------

AUTHORIZATION_STARTED = "AuthorizationStarted"
AUTHORIZATION_FINISHED = "AuthorizationFinished"
START_LINK_OPENED = "StartLinkOpened"
START_LINK_EXPIRED = "StartLinkExpired"
ACCESS_TOKEN_SERVED = "AccessTokenServed"
ACCESS_TOKEN_REFRESHED = "AccessTokenRefreshed"
REAUTH_REQUIRED = "ReauthRequired"
# Per run or per batch, in the handler's thread (the shared Metrics), with `service` only.
# Each keep-alive count, and the field of the run's summary it is taken from.
KEEPALIVE_METRICS = {
    "KeepAliveDue": "due",
    "KeepAliveRefreshed": "refreshed",
    "KeepAliveFailed": "failed",
    "KeepAliveReauthRequired": "reauth_required",
}
WEBHOOK_DELIVERED = "WebhookDelivered"
WEBHOOK_RETRIED = "WebhookRetried"
WEBHOOK_DEAD_LETTERED = "WebhookDeadLettered"
WEBHOOK_LATENCY = "WebhookLatency"

# Each count's dimensions (the first set), then the roll-ups alarms and the dashboard read: CloudWatch
# aggregates no dimension away, so an alarm on one reason across providers needs a ("reason",) set.
# Powertools adds `service` to every set.
METRIC_DIMENSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    AUTHORIZATION_STARTED: (("provider", "dialect"), ("provider",), ()),
    AUTHORIZATION_FINISHED: (("provider", "dialect", "outcome", "reason"), ("provider", "outcome"), ("reason",), ()),
    START_LINK_OPENED: (("provider",), ()),
    START_LINK_EXPIRED: (("provider",), ()),
    ACCESS_TOKEN_SERVED: (("provider",), ()),
    ACCESS_TOKEN_REFRESHED: (("provider",), ()),
    REAUTH_REQUIRED: (("provider",), ()),
    **dict.fromkeys(KEEPALIVE_METRICS, ((),)),
    **dict.fromkeys((WEBHOOK_DELIVERED, WEBHOOK_RETRIED, WEBHOOK_DEAD_LETTERED, WEBHOOK_LATENCY), ((),)),
}

# The contract's fixed vocabularies: the only values these dimensions take. "provider" takes the
# deployment's configured provider ids, which the caller passes.
OUTCOMES = frozenset({"connected", "reject", "unsupported", "internal"})
REASONS = frozenset(
    {
        "none",  # connected
        "access_denied",
        "consent_required",
        "scope_not_granted",
        "account_type_not_supported",
        "admin_consent_required",
        "no_refresh_token",
        "expired",
        "issuer_mismatch",
        "browser_mismatch",
        "token_exchange_failed",
        "storage_unavailable",
        "provider_error",
        "client_revoked",
    }
)
# "dialect" takes the labels of the dialects at the edge (dialects.Dialect): this module lists none itself.
DIALECTS = frozenset(dialect.value for dialect in Dialect)
# What a value outside its vocabulary is counted as: an id must never become a dimension (one metric each).
UNLISTED = "unlisted"


def dimension_value(name: str, value: str, known_providers: Collection[str]) -> str:
    """`value` when it is in the dimension's fixed list, else UNLISTED (and a warning, without the value)."""
    allowed: Collection[str]
    if name == "provider":
        allowed = known_providers
    elif name == "dialect":
        allowed = DIALECTS
    elif name == "outcome":
        allowed = OUTCOMES
    elif name == "reason":
        allowed = REASONS
    else:
        raise ValueError(f"{name} is not a dimension of ours")
    if value in allowed:
        return value
    logger.warning("metric dimension value outside its list", extra={"dimension": name})
    return UNLISTED


def count(metric: str, *, known_providers: Collection[str] = (), **dimensions: str) -> None:
    """Count one `metric` with its own dimensions, in an EMF line of its own.

    Powertools' shared Metrics holds one dimension set per flush, so these do not go through it.
    """
    sets = METRIC_DIMENSIONS[metric]
    if set(dimensions) != set(sets[0]):
        raise ValueError(f"{metric} takes the dimensions {sets[0]}, not {tuple(dimensions)}")
    values = {name: dimension_value(name, value, known_providers) for name, value in dimensions.items()}
    blob = AmazonCloudWatchEMFProvider()  # namespace and service from POWERTOOLS_* variables
    for name in sets[0]:
        blob.add_dimension(name=name, value=values[name])
    for rollup in sets[1:]:
        blob.add_dimensions(service=str(blob.service), **{name: values[name] for name in rollup})
    blob.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    blob.flush_metrics()  # prints nothing when POWERTOOLS_METRICS_DISABLED is set


def add_webhook_attempts(delivered: int, retried: int, dead_lettered: int, latencies_ms: Collection[float]) -> None:
    """A batch's or a retry run's attempts, into the shared Metrics: call from the handler's thread only (the
    attempts run in a pool; Powertools' metric set is not guarded for concurrent writers)."""
    metrics.add_metric(name=WEBHOOK_DELIVERED, unit=MetricUnit.Count, value=delivered)
    metrics.add_metric(name=WEBHOOK_RETRIED, unit=MetricUnit.Count, value=retried)
    metrics.add_metric(name=WEBHOOK_DEAD_LETTERED, unit=MetricUnit.Count, value=dead_lettered)
    for latency in latencies_ms:
        metrics.add_metric(name=WEBHOOK_LATENCY, unit=MetricUnit.Milliseconds, value=latency)


# --- one correlation id per connect attempt ---------------------------------------------------------------


def attempt_id(state_hash: str) -> str:
    """The attempt's id in logs and in `authorization.failed` webhooks: a one-way function of its state's hash.

    Computable wherever the attempt is known (initiate has the state, the hop and the callback hash it, the
    table's stream carries the hash), but, unlike the state, it can neither open nor finish the attempt.
    """
    return "att_" + hashlib.sha256(f"attempt\x1f{state_hash}".encode()).hexdigest()[:32]


def follow_attempt(state_hash: str) -> str:
    """Every later log line of this request carries the attempt id, as correlation id and as `attemptId`."""
    attempt = attempt_id(state_hash)
    request_id = logger.get_correlation_id()
    if request_id and request_id != attempt:
        logger.append_keys(requestId=request_id)  # API Gateway's request id: the access log's key
    logger.set_correlation_id(attempt)
    logger.append_keys(attemptId=attempt)
    return attempt


def follow_connection(connection_id: str) -> None:
    logger.append_keys(connectionId=connection_id)


def renew_trace_emitter() -> None:
    """After a SnapStart restore: the X-Ray SDK's own UDP socket to the daemon, made at import, is the snapshot's in
    every copy; each copy gets its own, to the same daemon address. An emitter configured otherwise is left alone."""
    import sys

    if "aws_xray_sdk.core" not in sys.modules:  # tracing never imported it: nothing to renew
        return
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

    snapshot = xray_recorder.emitter
    if type(snapshot) is UDPEmitter:
        xray_recorder.emitter = UDPEmitter(f"{snapshot.ip}:{snapshot.port}")
        snapshot._socket.close()  # no public close; this copy's duplicate of the snapshot's socket
