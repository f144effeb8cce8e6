"""The local runner as a process: it notices a child that dies, restarts at once on the same ports, and says what
to install when Java is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from local.dynamodb import free_port
from local.template import ROOT
from tests.e2e.conftest import start_runner, wait_until

pytestmark = pytest.mark.timeout(300)


def children_of(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # a thread (a request's) that ended while we looked
    return found


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_the_runner_exits_non_zero_naming_dynamodb_local_when_it_dies(tmp_path):
    # Given a running runner
    runner = start_runner(tmp_path)
    try:
        (java,) = [pid for pid in children_of(runner.process.pid) if "DynamoDBLocal.jar" in command_line(pid)]
        # When its DynamoDB Local is killed
        os.kill(java, signal.SIGKILL)
        # Then the runner stops by itself, non-zero, saying which child died
        wait_until(lambda: runner.process.poll() is not None, 60, "the runner noticing DynamoDB Local died")
    finally:
        code = runner.stop()
    assert code != 0
    assert "DynamoDB Local" in runner.output().split("Press Ctrl-C to stop.")[-1], runner.output()


def test_a_runner_starts_at_once_on_the_ports_of_one_just_stopped(tmp_path):
    # Given a runner that served requests (their connections to DynamoDB Local and the API leave TIME_WAIT sockets)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    ports = {"PORT": str(free_port()), "DYNAMODB_PORT": str(free_port()), "SANDBOX_PORT": str(free_port())}
    first = start_runner(first_dir, port=int(ports["PORT"]), **ports)
    with first.api() as api:
        for _ in range(5):
            assert api.get("/v2/external-calendars/providers").status_code == 200
    # When it is stopped as Ctrl-C stops it, and another starts on the same ports right away
    assert first.stop() == 0, first.output()
    second = start_runner(second_dir, port=int(ports["PORT"]), **ports)
    # Then the second serves
    try:
        with second.api() as api:
            assert api.get("/v2/external-calendars/providers").status_code == 200
    finally:
        assert second.stop() == 0, second.output()


def test_without_java_the_runner_says_what_to_install(tmp_path):
    # Given a PATH with no java on it (python itself is started by its full path)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {
        **os.environ,
        "PATH": str(empty),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared" / "python"), str(ROOT)]),
        "PORT": str(free_port()),
        "DYNAMODB_PORT": str(free_port()),
    }
    # When the runner starts
    done = subprocess.run(
        [sys.executable, "-m", "local.runner"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    # Then it fails, and its message names Java and how to install it
    assert done.returncode != 0
    message = done.stderr
    assert "Java" in message and "install" in message, message
