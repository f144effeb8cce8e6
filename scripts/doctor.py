"""`make doctor`: is this machine ready for `make run` and `make test`? Each failed check says how to fix it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from local.browser import find_chromium

DEBIAN = "on Debian/Ubuntu: "


@dataclass
class Check:
    name: str
    needed_by: str
    run: Callable[[], tuple[bool, str]]
    fix: str
    required: bool = True


def _version_of(command: list[str]) -> tuple[tuple[int, ...], str] | None:
    if not shutil.which(command[0]):
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip()
    found = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not found:
        return None
    return tuple(int(part) for part in found.groups() if part is not None), text.splitlines()[0]


def _at_least(command: list[str], minimum: tuple[int, ...]) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        found = _version_of(command)
        if found is None:
            return False, f"{command[0]} not found"
        version, line = found
        return version >= minimum, line

    return check


def _python() -> tuple[bool, str]:
    return sys.version_info >= (3, 11), f"Python {sys.version.split()[0]} ({sys.executable})"


def _free(variable: str, default: int) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        port = int(os.environ.get(variable) or default)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the runner binds: TIME_WAIT is fine
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False, f"{variable}={port} is in use"
        return True, f"{variable}={port} is free"

    return check


def _chromium() -> tuple[bool, str]:
    found = find_chromium()
    if found is None:
        return False, "no chromium, chromium-browser or google-chrome on PATH, and CHROMIUM_PATH unset"
    version = _version_of([str(found), "--version"])
    return True, version[1] if version else str(found)


CHECKS = [
    Check(
        "Python 3.11+",
        "everything",
        _python,
        "install Python 3.11 or newer (" + DEBIAN + "apt-get install python3 python3-venv)",
    ),
    Check(
        "python venv", "make install", lambda: (_has_venv(), "python3 -m venv"), DEBIAN + "apt-get install python3-venv"
    ),
    Check(
        "Java 17+",
        "DynamoDB Local (make run, tests)",
        _at_least(["java", "-version"], (17,)),
        DEBIAN + "apt-get install openjdk-17-jre-headless",
    ),
    Check(
        "Node.js 20+",
        "npm ci, oidc-provider (tests)",
        _at_least(["node", "--version"], (20,)),
        "install Node.js 20 or newer (https://nodejs.org, or " + DEBIAN + "apt-get install nodejs npm)",
    ),
    Check(
        "npm",
        "npm ci (DynamoDB Local's jar, oidc-provider)",
        _at_least(["npm", "--version"], (9,)),
        DEBIAN + "apt-get install npm",
    ),
    Check(
        "port for the API", "make run", _free("PORT", 3000), "stop what listens there, or run with PORT=3001 make run"
    ),
    Check(
        "port for DynamoDB Local",
        "make run",
        _free("DYNAMODB_PORT", 8000),
        "stop what listens there, or run with DYNAMODB_PORT=8001 make run",
    ),
    Check(
        "Chromium",
        "make e2e / make test (browser tests)",
        _chromium,
        "make browser (apt-get install chromium, as root or with passwordless sudo), or set CHROMIUM_PATH",
        required=False,
    ),
]


def _has_venv() -> bool:
    import importlib.util

    return importlib.util.find_spec("venv") is not None and importlib.util.find_spec("ensurepip") is not None


def main() -> int:
    failed = 0
    for check in CHECKS:
        ok, detail = check.run()
        mark = "ok  " if ok else ("FAIL" if check.required else "warn")
        print(f"[{mark}] {check.name:<24} {detail}")
        if not ok:
            print(f"       needed by {check.needed_by}; fix: {check.fix}")
            failed += check.required
    print(
        "Ready for make run and make test."
        if not failed
        else f"{failed} check(s) failed; fix them and run make doctor again."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
