"""`python -m bench --quick` runs end to end and writes its table (figures only; no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

from local.template import ROOT


def test_the_quick_benchmark_prints_and_writes_every_row(tmp_path):
    # Given a markdown file with text around the figures' block
    output = tmp_path / "performance.md"
    output.write_text("# Performance\n\nkept before\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\nkept after\n")
    # When the quick benchmark runs (its own DynamoDB Local and token server)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "layers" / "shared" / "python")},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # Then it succeeds, and the table holds every measure, printed and written between the markers
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    assert "kept before" in text and "kept after" in text and "\nold\n" not in text
    for row in (
        "cold init InitiateFunction",
        "cold init CallbackFunction",
        "cold init InitiateFunction against the card floor",
        "cold init CallbackFunction against the card floor",
        "first request after a SnapStart restore, InitiateFunction",
        "first request after a SnapStart restore, CallbackFunction",
        "warm initiate (wix), p50",
        "warm initiate (teamup), p50",
        "warm callback (success), p50",
        "warm access-token (no refresh), p99",
        "DynamoDB capacity, one connect flow",
        "layer size",
        "peak memory InitiateFunction",
        "peak memory CallbackFunction",
        "bytecode compilation at a Lambda cold start: the layer",
        "bytecode compilation at a Lambda cold start: InitiateFunction's own code",
        "Where a cold start's time goes",
        "| boto3 and the DynamoDB client (the floor) |",
        "| first request: its DynamoDB and provider calls (new connections, each operation's first call) |",
        "| first request: the code's own work around the calls (first-use setup, first-use imports) |",
        "Where CallbackFunction's first request after a SnapStart restore goes",
        "| DynamoDB UpdateItem PendingAuthorizationsTable |",
        "| HTTP POST /google/token |",
        "| the code's own work around the calls |",
        "Warm requests split",
        "webhook delivery, 20 connection.created events",
        "Keep-alive: one run over 200 due connections",
        "| due / refreshed / reauth / failed / skipped | 200 / 200 / 0 / 0 / 0 |",
        "| connections refreshed per second |",
        "| DynamoDB per refreshed connection |",
        "100 000 due connections, extrapolated",
    ):
        assert row in done.stdout and row in text, row
    assert "python -m bench --quick" in text
