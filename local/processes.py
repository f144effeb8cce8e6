"""Child processes the local tools and the tests start (DynamoDB Local, the runner, an OIDC provider)."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0, stop_signal: int = signal.SIGTERM) -> int:
    """Ask a still-running process to stop (SIGTERM unless told), give it `timeout` seconds, then kill it.

    Returns its exit code.
    """
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
