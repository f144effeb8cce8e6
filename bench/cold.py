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
from bench.warm import floor_on, prepare_floor_callback, token_endpoint
from local.template import ROOT, functions, load_template
from tests.support.lambda_runtime import EVENTS, lambda_variables, run_child

# Packages the python3.13 Lambda runtime ships precompiled; everything else comes from the layer.
SITE = ROOT / "bench" / "out" / "lambda-site"  # git-ignored
_COMPLETE = ".complete-3"  # bumped when the site's make-up changes, so a cached site is rebuilt
# snapshot_restore_py: the SnapStart hooks' registry, which Lambda's Python runtimes ship (3.12 and later).
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "snapshot_restore_py"}
# What layers/shared/Makefile removes from the layer: the runtime's copies are used.
BOTOCORE_ONLY = {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "python_dateutil", "six"}


@dataclass
class ColdRuns:
    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)


FLOORS = ("floor", "card-floor")


def _lambda_variables(target: str) -> dict[str, str]:
    """As in Lambda, tracing and EMF metrics on as template.yaml deploys them: the request is sampled, its
    subsegments go by UDP to a daemon address nobody listens on, its metrics to stdout."""
    task_root = target if target not in FLOORS else str(ROOT)
    return {**lambda_variables(task_root, "bench"), "POWERTOOLS_METRICS_DISABLED": "false"}


def lambda_site(build: bool) -> tuple[list[str], str]:
    """Where a cold start finds its packages, as in Lambda: the layer's requirements and the runtime's boto3, and
    nothing else of this machine's virtualenv (which holds test tools that change import times, e.g. rich for
    httpx's CLI). Built for this machine's Python from layers/shared/requirements.txt (needs the registry);
    without it (--quick, nothing cached) the virtualenv's site-packages stand in."""
    if build and not (SITE / _COMPLETE).exists():
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
        # As layers/shared/Makefile: the runtime's boto3/botocore and their libraries, not the copies aws-xray-sdk
        # pulls in.
        for entry in (SITE / "layer").iterdir():
            if entry.name.split("-")[0].removesuffix(".py") in BOTOCORE_ONLY:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        runtime = SITE / "runtime"
        runtime.mkdir()
        site_packages = Path(sysconfig.get_paths()["purelib"])
        for entry in site_packages.iterdir():
            if entry.name.split("-")[0].split(".")[0] in RUNTIME_PACKAGES | {"python_dateutil"}:
                (runtime / entry.name).symlink_to(entry)
        (SITE / _COMPLETE).touch()
    if (SITE / _COMPLETE).exists():
        return [str(SITE / "layer"), str(SITE / "runtime")], "the layer's requirements + the runtime's boto3 only"
    return [], "this virtualenv's site-packages (no Lambda-like site built: run without --quick once)"


def _child(stack: Stack, target: str, event_file: Path, site: list[str], *flags: str) -> dict[str, Any]:
    env = {**stack.child_env(), **_lambda_variables(target)}
    isolate = []
    if site:
        # -S: no site-packages; the code, the layer code and the Lambda-like site (/var/task, /opt/python, runtime).
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *site])
        isolate = ["-S"]
    command = [sys.executable, *isolate, "-m", "bench.coldstart_child", target, str(event_file), *flags]
    return run_child(f"cold start of {target}", command, env, timeout=60)


def measure_cold(stack: Stack, runs: int, site: list[str], anatomy: bool = False) -> dict[str, ColdRuns]:
    """Median-ready cold starts of both floors and both functions, interleaved. With `anatomy`, the functions' children
    import the handler's dependencies one group at a time first (bench/coldstart_child.py), to say where time goes."""
    code = {name: str(f.code_dir) for name, f in functions(load_template()).items()}
    results = {name: ColdRuns(name) for name in (*FLOORS, "InitiateFunction", "CallbackFunction")}
    steps = ("--anatomy",) if anatomy else ()
    with tempfile.TemporaryDirectory(prefix="cc-bench-cold-") as directory:
        callback_file = Path(directory) / "callback.json"
        for _ in range(runs):
            if not anatomy:
                for floor in FLOORS:
                    results[floor].runs.append(_child(stack, floor, EVENTS / "initiate-wix.json", site))
            initiate = _child(stack, code["InitiateFunction"], EVENTS / "initiate-wix.json", site, *steps)
            assert initiate["status"] == 200, initiate
            results["InitiateFunction"].runs.append(initiate)
            state, nonce = start_attempt()
            script_token_answer(stack, nonce)
            callback_file.write_text(json.dumps(callback_event(state)))
            callback = _child(stack, code["CallbackFunction"], callback_file, site, *steps)
            assert callback["status"] == 302, callback
            results["CallbackFunction"].runs.append(callback)
    return results


# Each function's request after a restore, and the floor's same calls (bench/floor.py).
RESTORED = {"InitiateFunction": "initiate", "CallbackFunction": "callback"}


def measure_restore(stack: Stack, runs: int, site: list[str]) -> dict[str, ColdRuns]:
    """The first request of a copy restored from a SnapStart snapshot (emulated with fork, bench/coldstart_child.py
    --restore), per function, interleaved with the floor's first request on new connections."""
    code = {name: str(f.code_dir) for name, f in functions(load_template()).items()}
    results = {name: ColdRuns(name) for key in RESTORED for name in (key, f"floor {RESTORED[key]}")}
    floor = floor_on(stack)  # puts the floor's attempts and scripts its token answers, from this process
    floor_setup = {"tokenEndpoint": token_endpoint(stack), "clientId": floor.client_id}
    with tempfile.TemporaryDirectory(prefix="cc-bench-restore-") as directory:
        event_file = Path(directory) / "event.json"
        for _ in range(runs):
            event_file.write_text(json.dumps({"request": "initiate", **floor_setup}))
            results["floor initiate"].runs.append(_child(stack, "floor", event_file, site, "--restore"))
            initiate = _child(stack, code["InitiateFunction"], EVENTS / "initiate-wix.json", site, "--restore")
            assert initiate["status"] == 200, initiate
            results["InitiateFunction"].runs.append(initiate)
            state_hash = prepare_floor_callback(floor, stack)
            event_file.write_text(json.dumps({"request": "callback", "stateHash": state_hash, **floor_setup}))
            results["floor callback"].runs.append(_child(stack, "floor", event_file, site, "--restore"))
            state, nonce = start_attempt()
            script_token_answer(stack, nonce)
            event_file.write_text(json.dumps(callback_event(state)))
            callback = _child(stack, code["CallbackFunction"], event_file, site, "--restore")
            assert callback["status"] == 302, callback
            results["CallbackFunction"].runs.append(callback)
    return results


def anatomy_rows(results: dict[str, ColdRuns]) -> list[tuple[str, dict[str, float]]]:
    """(step, {function: median ms}) in import order, from anatomy runs."""
    steps = [name for name, _ in results["InitiateFunction"].runs[0]["steps"]]
    rows = []
    for step in steps:
        medians = {}
        for function in ("InitiateFunction", "CallbackFunction"):
            medians[function] = statistics.median(dict(run["steps"])[step] for run in results[function].runs)
        rows.append((step, medians))
    return rows


def _is_stdlib(path: str) -> bool:
    stdlib = sysconfig.get_paths()["stdlib"]
    return path.startswith(stdlib) and "site-packages" not in path


def compile_cost(modules: list[str]) -> dict[str, tuple[float, int]]:
    """Milliseconds to compile what a cold start imports from source, and how many modules: the layer's, and the
    function's own code (/var/task, which `sam build` copies without bytecode).

    /opt and /var/task are read-only in Lambda, so a module without a matching .pyc is compiled at every cold
    start. layers/shared/Makefile ships python3.13 bytecode when the build machine has a python3.13.
    """
    sources: dict[str, list[Path]] = {"layer": []}
    for name in modules:
        if name.split(".")[0] in RUNTIME_PACKAGES:
            continue
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and origin.endswith(".py") and not _is_stdlib(origin):
            sources["layer"].append(Path(origin))
    for function_name, function in functions(load_template()).items():
        sources[f"{function_name} code"] = sorted(Path(function.code_dir).glob("*.py"))
    costs = {}
    for part, paths in sources.items():
        started = time.perf_counter()
        for path in paths:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        costs[part] = ((time.perf_counter() - started) * 1000, len(paths))
    return costs


def restore_steps(ours: ColdRuns, floor: ColdRuns) -> list[tuple[str, float | None, float | None]]:
    """(step, ours ms, floor ms) of a first request after a restore, medians across runs: the after-restore hooks,
    each call in the order ours makes them (paired with the floor's same call, when it makes one: by name and
    occurrence), the floor's calls ours does not make, and each side's own work (its total less its calls)."""

    def named(run: dict[str, Any]) -> dict[str, float]:
        seen: dict[str, int] = {}
        calls = {}
        for name, ms in run["calls"]:
            seen[name] = seen.get(name, 0) + 1
            calls[name if seen[name] == 1 else f"{name} ({seen[name]})"] = ms
        return calls

    def median(runs: ColdRuns, step: str) -> float | None:
        values = [named(run)[step] for run in runs.runs if step in named(run)]
        return statistics.median(values) if values else None

    order = list(named(ours.runs[0])) + [step for step in named(floor.runs[0]) if step not in named(ours.runs[0])]
    rows: list[tuple[str, float | None, float | None]] = [("after-restore hooks", ours.median("restore_ms"), None)]
    rows += [(step, median(ours, step), median(floor, step)) for step in order]

    def own(runs: ColdRuns, hooks: bool) -> float:
        return statistics.median(
            run["first_request_ms"] - (run["restore_ms"] if hooks else 0) - sum(ms for _, ms in run["calls"])
            for run in runs.runs
        )

    rows.append(("the code's own work around the calls", own(ours, True), own(floor, False)))
    rows.append(
        ("**first request after the restore**", ours.median("first_request_ms"), floor.median("first_request_ms"))
    )
    return rows
