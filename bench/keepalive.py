"""The keep-alive job at scale: N due connections refreshed by one run, in a child interpreter (the "Lambda").

The parent seeds N CONNECTED connections due now (through the DAL and cipher the callback uses) and hosts the
local token server, which rotates every refresh token; the child runs calendar_connect.keepalive.keep_alive once,
with the deployment's DynamoDB client recording ReturnConsumedCapacity, and reports what it did. The child is
another process so that the token server's threads do not share its interpreter lock, as in AWS.
"""

from __future__ import annotations

import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.stack import Stack
from local.template import load_template, schedules
from tests.support.lambda_runtime import run_child
from tests.support.provider_server import Answer, Received

BUDGET_SECONDS = 900 - 60  # Lambda's 15 minutes, less KEEPALIVE_STOP_MARGIN_SECONDS
TARGET = 100_000
# A run is one invocation per schedule of KeepAliveFunction in template.yaml, each over its group of shards.
INVOCATIONS = len([s for s in schedules(load_template()) if s.function == "KeepAliveFunction"])


@dataclass
class KeepAliveFigures:
    connections: int
    concurrency: int
    seconds: float
    cpu_seconds: float
    summary: dict[str, Any]
    capacity: dict[str, dict[str, float]]  # operation -> {"calls", "read", "write", "index_write"}
    peak_mib: float

    @property
    def per_second(self) -> float:
        return self.summary["refreshed"] / self.seconds if self.seconds else 0.0

    def per_connection(self, key: str) -> float:
        refreshed = self.summary["refreshed"] or 1
        return sum(c[key] for c in self.capacity.values()) / refreshed


def _rotating(received: Received) -> Answer:
    return Answer(
        200,
        {
            "access_token": f"ya29.bench-{secrets.token_hex(8)}",
            "expires_in": 3599,
            "token_type": "Bearer",
            "refresh_token": received.form.get("refresh_token", "") + "r",
        },
    )


def _seed(count: int, now: int) -> None:
    from calendar_connect import deployment
    from calendar_connect.connect_flow import connection_id_for
    from calendar_connect.records import ConnectionRecord, ConnectionStatus, TokenSet
    from calendar_connect.timestamps import iso

    here = deployment.current()

    def one(n: int) -> None:
        account = f"bench-keepalive-{n}"
        connection_id = connection_id_for("example01", "google", "bench-schedule", account)
        tokens = TokenSet(access_token=f"at-{n}", refresh_token=f"1//bench-refresh-{n}-", expires_at=now + 3599)
        here.storage.connections.upsert_connected(
            ConnectionRecord(
                connectionId=connection_id,
                clientId="example01",
                providerId="google",
                calendarType="GOOGLE",
                scheduleId="bench-schedule",
                externalAccountId=account,
                externalAccountEmail="staff.member@example.com",
                scopesGranted=["openid", "email", "https://www.googleapis.com/auth/calendar"],
                status=ConnectionStatus.CONNECTED,
                createdAt=iso(now),
                updatedAt=iso(now),
                tokens=here.cipher.encrypt(connection_id, tokens),
                accessTokenExpiresAt=tokens.expires_at,
                keepAliveDueAt=now - 1 - n % 3600,  # due, spread over the last hour as a jittered cohort is
            )
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


_CHILD = r"""
import json, resource, sys, time
from calendar_connect import deployment
from calendar_connect.keepalive import keep_alive
from bench.capacity import Call, _recording

calls = []
here = deployment.current()
here.storage.connections.get("warm-up")  # the client's first connection, as a warm container has it
_recording(here.storage.client, calls)
now = int(sys.argv[1])
cpu, started = time.process_time(), time.perf_counter()
run = keep_alive(here, lambda: 10**9, now=now)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
capacity = {}
for call in calls:
    entry = capacity.setdefault(call.operation, {"calls": 0, "read": 0.0, "write": 0.0, "index_write": 0.0})
    entry["calls"] += 1
    reading = call.operation in ("GetItem", "Query")
    entry["read"] += call.read + (call.index_write if reading else 0.0)  # a Query's index capacity is a read
    entry["write"] += call.write
    entry["index_write"] += 0.0 if reading else call.index_write
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "summary": run.summary(), "capacity": capacity, "peak": peak}))
"""


def measure_keepalive(stack: Stack, count: int) -> KeepAliveFigures:
    now = int(time.time())
    _seed(count, now)
    stack.provider.script("/google/token", *[_rotating] * count)
    result = run_child(
        "keep-alive child",
        [sys.executable, "-c", _CHILD, str(now)],
        {**stack.child_env(), "POWERTOOLS_LOG_LEVEL": "WARNING"},
        timeout=1800,
    )
    from calendar_connect.settings import get_settings

    return KeepAliveFigures(
        connections=count,
        concurrency=get_settings().keepalive_concurrency,
        seconds=result["seconds"],
        cpu_seconds=result["cpu"],
        summary=result["summary"],
        capacity=result["capacity"],
        peak_mib=result["peak"],
    )


def keepalive_section(figures: KeepAliveFigures) -> str:
    s = figures.summary
    rate = figures.per_second
    cpu_ms = figures.cpu_seconds * 1000 / (s["refreshed"] or 1)
    lines = [
        f"Keep-alive: one run over {figures.connections} due connections (`KEEPALIVE_CONCURRENCY` "
        f"{figures.concurrency}), DynamoDB Local and the local token server (rotating every refresh token) on "
        "this machine, the run in a child interpreter as in Lambda:",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| due / refreshed / reauth / failed / skipped | {s['due']} / {s['refreshed']} / {s['reauth_required']} "
        f"/ {s['failed']} / {s['skipped']} |",
        f"| wall time of the run | {figures.seconds:.1f} s |",
        f"| connections refreshed per second | {rate:.0f} |",
        f"| CPU time per connection (the run's own process) | {cpu_ms:.2f} ms |",
        f"| peak memory of the run (ru_maxrss) | {figures.peak_mib:.0f} MiB |",
        f"| DynamoDB per refreshed connection | {figures.per_connection('read'):.2f} RCU + "
        f"{figures.per_connection('write') + figures.per_connection('index_write'):.2f} WCU "
        f"(of which {figures.per_connection('index_write'):.2f} WCU index) |",
        "",
        "DynamoDB calls of the run (ReturnConsumedCapacity=INDEXES):",
        "",
    ]
    for operation, c in sorted(figures.capacity.items()):
        lines.append(
            f"- {operation}: {c['calls']:.0f} calls, {c['read']:g} RCU, {c['write']:g} WCU"
            + (f" + {c['index_write']:g} WCU index" if c["index_write"] else "")
        )
    share = TARGET // INVOCATIONS
    at_rate = share / rate if rate else float("inf")
    cpu_bound = share * cpu_ms / 1000
    lines += [
        "",
        f"100 000 due connections, extrapolated: a run is {INVOCATIONS} invocations (template.yaml: one schedule per "
        f"{16 // INVOCATIONS} of the index's 16 shards; connections fall into shards by a hash of their id), so each "
        f"takes about {TARGET:,} / {INVOCATIONS} = {share:,}. At the rate measured here, {share:,} / {rate:.0f} per "
        f"second = {at_rate:.0f} s; bound by CPU alone (one vCPU at 1769 MB, this machine's core taken as one), "
        f"{share:,} x {cpu_ms:.2f} ms = {cpu_bound:.0f} s. Against each invocation's budget of 900 - 60 = "
        f"{BUDGET_SECONDS} s: "
        + (
            "within it."
            if max(at_rate, cpu_bound) <= BUDGET_SECONDS
            else "**over it**: each invocation stops taking work in time, and the next run (15 minutes later) takes "
            "the rest."
        ),
    ]
    return "\n".join(lines)
