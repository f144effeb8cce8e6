"""Cold starts: fresh interpreters, interleaved with the floor so that both see the same machine."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.flow import callback_event, script_token_answer, start_attempt
from bench.stack import Stack
from local.template import ROOT, functions, load_template
from tests.support.lambda_runtime import EVENTS

# Packages the python3.13 Lambda runtime ships precompiled; everything else comes from the layer.
SITE = ROOT / "bench" / "out" / "lambda-site"  # git-ignored
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}


@dataclass
class ColdRuns:
    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)


def _lambda_variables(target: str) -> dict[str, str]:
    """Reserved variables the Lambda runtime sets: libraries (the X-Ray SDK, Powertools) behave as in Lambda."""
    return {
        "LAMBDA_TASK_ROOT": target if target != "floor" else str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    }


def lambda_site(build: bool) -> tuple[list[str], str]:
    """Where a cold start finds its packages, as in Lambda: the layer's requirements and the runtime's boto3, and
    nothing else of this machine's virtualenv (which holds test tools that change import times, e.g. rich for
    httpx's CLI). Built for this machine's Python from layers/shared/requirements.txt (needs the registry);
    without it (--quick, nothing cached) the virtualenv's site-packages stand in."""
    if build and not (SITE / ".complete").exists():
        shutil.rmtree(SITE, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(SITE / "layer"),
                "--requirement",
                str(ROOT / "layers" / "shared" / "requirements.txt"),
            ],
            check=True,
            timeout=600,
        )
        # As layers/shared/Makefile: the runtime's boto3/botocore/s3transfer, not the copies aws-xray-sdk pulls in.
        for entry in (SITE / "layer").iterdir():
            if entry.name.split("-")[0] in ("boto3", "botocore", "s3transfer"):
                shutil.rmtree(entry)
        runtime = SITE / "runtime"
        runtime.mkdir()
        site_packages = Path(sysconfig.get_paths()["purelib"])
        for entry in site_packages.iterdir():
            if entry.name.split("-")[0].split(".")[0] in RUNTIME_PACKAGES | {"python_dateutil"}:
                (runtime / entry.name).symlink_to(entry)
        (SITE / ".complete").touch()
    if (SITE / ".complete").exists():
        return [str(SITE / "layer"), str(SITE / "runtime")], "the layer's requirements + the runtime's boto3 only"
    return [], "this virtualenv's site-packages (no Lambda-like site built: run without --quick once)"


def _child(stack: Stack, target: str, event_file: Path, site: list[str]) -> dict[str, Any]:
    env = {**stack.child_env(), **_lambda_variables(target)}
    isolate = []
    if site:
        # -S: no site-packages; the code, the layer code and the Lambda-like site (/var/task, /opt/python, runtime).
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *site])
        isolate = ["-S"]
    done = subprocess.run(
        [sys.executable, *isolate, "-m", "bench.coldstart_child", target, str(event_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start of {target} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_cold(stack: Stack, runs: int, site: list[str]) -> dict[str, ColdRuns]:
    code = {name: str(f.code_dir) for name, f in functions(load_template()).items()}
    results = {name: ColdRuns(name) for name in ("floor", "InitiateFunction", "CallbackFunction")}
    with tempfile.TemporaryDirectory(prefix="cc-bench-cold-") as directory:
        callback_file = Path(directory) / "callback.json"
        for _ in range(runs):
            results["floor"].runs.append(_child(stack, "floor", EVENTS / "initiate-wix.json", site))
            initiate = _child(stack, code["InitiateFunction"], EVENTS / "initiate-wix.json", site)
            assert initiate["status"] == 200, initiate
            results["InitiateFunction"].runs.append(initiate)
            state, nonce = start_attempt()
            script_token_answer(stack, nonce)
            callback_file.write_text(json.dumps(callback_event(state)))
            callback = _child(stack, code["CallbackFunction"], callback_file, site)
            assert callback["status"] == 302, callback
            results["CallbackFunction"].runs.append(callback)
    return results


def _is_stdlib(path: str) -> bool:
    stdlib = sysconfig.get_paths()["stdlib"]
    return path.startswith(stdlib) and "site-packages" not in path


def compile_cost(modules: list[str]) -> tuple[float, int]:
    """Milliseconds to compile the layer modules a cold start imports, and how many there are.

    The layer's Makefile deletes __pycache__ (pip compiled it for the build's Python, not 3.13) and
    /opt is read-only, so in Lambda this compilation happens at every cold start.
    """
    sources = []
    for name in modules:
        if name.split(".")[0] in RUNTIME_PACKAGES:
            continue
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and origin.endswith(".py") and not _is_stdlib(origin):
            sources.append(Path(origin))
    started = time.perf_counter()
    for path in sources:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    return (time.perf_counter() - started) * 1000, len(sources)
