"""`python -m bench [--quick]`: measure, print one table, and write it into docs/performance.md."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from bench.capacity import Capacity, measure_capacity
from bench.cold import (
    FLOORS,
    RESTORED,
    ColdRuns,
    anatomy_rows,
    compile_cost,
    lambda_site,
    measure_cold,
    measure_restore,
    restore_steps,
)
from bench.keepalive import keepalive_section, measure_keepalive
from bench.layer import LayerSize, measure_layer
from bench.stack import local_stack
from bench.warm import Latencies, measure_warm
from bench.webhooks import measure_webhooks, webhook_rows
from local.template import ROOT

DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
COLD_TARGET, CARD_TARGET, WARM_TARGET, RESTORE_TARGET = 1.3, 1.15, 1.15, 1.3
CARD_FLOOR = "boto3 and the DynamoDB client, pydantic, httpx, Powertools Logger, Metrics and Tracer"
MEMORY_SIZES = (256, 512, 1024, 1769)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs, no layer build: proves the benchmark works")
    parser.add_argument("--runs", type=int, help="cold starts per function (default 15; quick 2)")
    parser.add_argument("--iterations", type=int, help="warm requests per scenario (default 300; quick 10)")
    parser.add_argument(
        "--keepalive", type=int, help="due connections for one keep-alive run (default 2000; quick 200)"
    )
    parser.add_argument(
        "--output", type=Path, help="markdown file to update (default docs/performance.md; quick: none)"
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 15)
    args.iterations = args.iterations or (10 if args.quick else 300)
    args.keepalive = args.keepalive or (200 if args.quick else 2000)
    if args.output is None and not args.quick:
        args.output = DOC
    return args


def _ratio(ours: float, floor: float) -> str:
    return f"{ours / floor:.2f}x" if floor else "n/a"


def _verdict(ours: float, floor: float, target: float) -> str:
    return "met" if floor and ours / floor <= target else "**not met**"


def table(
    cold: dict[str, ColdRuns],
    restored: dict[str, ColdRuns],
    warm: list[Latencies],
    capacity: Capacity,
    layer: LayerSize | None,
    compile_ms: dict[str, tuple[float, int]],
    runs: int,
    iterations: int,
) -> str:
    floor = cold["floor"]
    rows = [
        "| measure | Calendar Connect | floor | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name in ("InitiateFunction", "CallbackFunction"):
        ours = cold[name]
        rows.append(
            f"| cold init {name}, median of {runs} (import + first request) "
            f"| {ours.median('init_ms'):.0f} ms "
            f"({ours.median('import_ms'):.0f} + {ours.median('first_request_ms'):.0f})"
            f" | {floor.median('init_ms'):.0f} ms | {_ratio(ours.median('init_ms'), floor.median('init_ms'))} "
            f"| ≤ {COLD_TARGET}x: {_verdict(ours.median('init_ms'), floor.median('init_ms'), COLD_TARGET)} |"
        )
        rows.append(
            f"| cold init {name}, CPU time only | {ours.median('cpu_ms'):.0f} ms | {floor.median('cpu_ms'):.0f} ms "
            f"| {_ratio(ours.median('cpu_ms'), floor.median('cpu_ms'))} | (less sensitive to a busy machine) |"
        )
    card = cold["card-floor"]
    for name in ("InitiateFunction", "CallbackFunction"):
        ours = cold[name]
        for key, what, target in (("init_ms", "", CARD_TARGET), ("cpu_ms", ", CPU time only", None)):
            verdict = f"≤ {target}x: {_verdict(ours.median(key), card.median(key), target)}" if target else ""
            rows.append(
                f"| cold init {name} against the card floor ({CARD_FLOOR}){what} | {ours.median(key):.0f} ms "
                f"| {card.median(key):.0f} ms | {_ratio(ours.median(key), card.median(key))} | {verdict} |"
            )
    for name, request in RESTORED.items():
        ours, base = restored[name], restored[f"floor {request}"]
        rows.append(
            f"| first request after a SnapStart restore, {name} ({request}), median of {len(ours.runs)} "
            f"(after-restore hooks + request) | {ours.median('first_request_ms'):.1f} ms "
            f"({ours.median('restore_ms'):.1f} + {ours.median('first_request_ms') - ours.median('restore_ms'):.1f}) "
            f"| {base.median('first_request_ms'):.1f} ms (its first request on new connections) "
            f"| {_ratio(ours.median('first_request_ms'), base.median('first_request_ms'))} "
            f"| ≤ {RESTORE_TARGET}x: "
            f"{_verdict(ours.median('first_request_ms'), base.median('first_request_ms'), RESTORE_TARGET)} |"
        )
    for latencies in warm:
        p50, f50 = latencies.p50(), latencies.p50(floor=True)
        p99, f99 = latencies.p99(), latencies.p99(floor=True)
        rows.append(
            f"| warm {latencies.name}, p50 of {iterations} | {p50:.2f} ms | {f50:.2f} ms | {_ratio(p50, f50)} "
            f"| ≤ {WARM_TARGET}x: {_verdict(p50, f50, WARM_TARGET)} |"
        )
        rows.append(f"| warm {latencies.name}, p99 | {p99:.2f} ms | {f99:.2f} ms | {_ratio(p99, f99)} | |")
    met = capacity.read <= capacity.minimum_read and capacity.write <= capacity.minimum_write
    rows.append(
        f"| DynamoDB capacity, one connect flow | {capacity.read:g} RCU + {capacity.write:g} WCU "
        f"| {capacity.minimum_read:g} RCU + {capacity.minimum_write:g} WCU (minimum) "
        f"| {_ratio(capacity.read + capacity.write, capacity.minimum_read + capacity.minimum_write)} "
        f"| = minimum: {'met' if met else '**not met**'} |"
    )
    if layer:
        rows.append(
            f"| layer size, zipped / unzipped | {layer.zipped / 2**20:.1f} MiB / {layer.unzipped / 2**20:.1f} MiB "
            f"| | | ({layer.source}) |"
        )
    else:
        rows.append(
            "| layer size | not measured: no `make build` output and none cached (`--quick` builds none) | | | |"
        )
    for name in ("InitiateFunction", "CallbackFunction"):
        peak, floor_peak = cold[name].median("peak_mib"), floor.median("peak_mib")
        rows.append(
            f"| peak memory {name} after its first request (ru_maxrss) | {peak:.0f} MiB "
            f"| {floor_peak:.0f} MiB | {_ratio(peak, floor_peak)} | |"
        )
    layer_ms, layer_modules = compile_ms["layer"]
    if layer and layer.ships_bytecode:
        rows.append(
            f"| bytecode compilation at a Lambda cold start: the layer ({layer_modules} modules imported) "
            f"| 0 ms: ships python3.13 .pyc ({layer.compiled}/{layer.sources} modules) | 0 ms | "
            f"| without them: {layer_ms:.0f} ms more per cold start |"
        )
    else:
        rows.append(
            f"| bytecode compilation at a Lambda cold start: the layer ({layer_modules} modules imported) "
            f"| {layer_ms:.0f} ms: the layer ships no python3.13 .pyc (no python3.13 on the build machine) | 0 ms "
            f"| | not in the cold rows above |"
        )
    for name in ("InitiateFunction", "CallbackFunction"):
        ms, count = compile_ms[f"{name} code"]
        rows.append(
            f"| bytecode compilation at a Lambda cold start: {name}'s own code ({count} file) | {ms:.1f} ms "
            f"| 0 ms | | not in the cold rows above (`sam build` copies function code without .pyc) |"
        )
    return "\n".join(rows)


def anatomy_table(anatomy: dict[str, ColdRuns], floor: ColdRuns, card: ColdRuns) -> str:
    rows = anatomy_rows(anatomy)
    names = ("InitiateFunction", "CallbackFunction")
    lines = [
        f"Where a cold start's time goes (median of {len(anatomy['InitiateFunction'].runs)} separate cold starts "
        "that import the handler's dependencies one group at a time, in this order: cold starts like the rows "
        "above, split; the first step makes one DynamoDB client more, and the sum adds medians):",
        "",
        "| step | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for step, medians in rows:
        lines.append(f"| {step} | " + " | ".join(f"{medians[name]:.0f} ms" for name in names) + " |")
    totals = {name: sum(medians[name] for _, medians in rows) for name in names}
    lines.append("| **sum** | " + " | ".join(f"**{totals[name]:.0f} ms**" for name in names) + " |")
    allowed = floor.median("init_ms") * COLD_TARGET
    lines += [
        "",
        f"The target (≤ {COLD_TARGET}x the floor's {floor.median('init_ms'):.0f} ms) allows "
        f"{allowed:.0f} ms in all, so {allowed - floor.median('init_ms'):.0f} ms beyond the floor. The card floor "
        f"({CARD_FLOOR}: {card.median('init_ms'):.0f} ms) at ≤ {CARD_TARGET}x allows "
        f"{card.median('init_ms') * CARD_TARGET:.0f} ms, so {card.median('init_ms') * (CARD_TARGET - 1):.0f} ms beyond "
        "the libraries for our code, our models and the first request.",
    ]
    return "\n".join(lines)


def restore_table(restored: dict[str, ColdRuns]) -> str:
    """Where each function's first request after a restore goes, step by step, against the floor's."""
    lines = []
    for name, request in RESTORED.items():
        ours, floor = restored[name], restored[f"floor {request}"]
        lines += [
            f"Where {name}'s first request after a SnapStart restore goes ({request}; medians of {len(ours.runs)} "
            "restored copies, each step's median on its own, so the steps need not add up to the total; a call's "
            "time is botocore's or httpx's work, the X-Ray subsegment on our side, and the round trip on a new "
            "connection):",
            "",
            "| step | ours | floor | beyond the floor |",
            "| --- | ---: | ---: | ---: |",
        ]
        for step, mine, theirs in restore_steps(ours, floor):
            beyond = f"{(mine or 0) - (theirs or 0):+.1f} ms"
            cells = [f"{value:.1f} ms" if value is not None else "none" for value in (mine, theirs)]
            lines.append(f"| {step} | {cells[0]} | {cells[1]} | {beyond} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def warm_split(warm: list[Latencies]) -> str:
    lines = [
        "Warm requests split: the code's own work (time outside the DynamoDB and provider calls, per request, "
        "p50) and the rest, the calls themselves:",
        "",
        "| request | own work: ours | own work: floor | calls: ours | calls: floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for latencies in warm:
        own, floor_own = latencies.own_p50(), latencies.own_p50(floor=True)
        lines.append(
            f"| {latencies.name} | {own:.2f} ms | {floor_own:.2f} ms | {latencies.calls_p50():.2f} ms "
            f"| {latencies.calls_p50(floor=True):.2f} ms |"
        )
    return "\n".join(lines)


def details(cold: dict[str, ColdRuns], capacity: Capacity, layer: LayerSize | None) -> str:
    lines = ["DynamoDB calls of one connect flow (ReturnConsumedCapacity=INDEXES):", ""]
    lines += [
        f"- {c.operation} {c.table}: {c.read:g} RCU, {c.write:g} WCU"
        + (f" + {c.index_write:g} WCU index" if c.index_write else "")
        for c in capacity.calls
    ]
    lines += ["", "The minimum:", ""] + [f"- {why}" for why in capacity.minimum_why]
    lines += ["", "CPU time of a cold start (median; the rest is waiting on DynamoDB and the token server):", ""]
    lines += [f"- {name}: {runs.median('cpu_ms'):.0f} ms" for name, runs in cold.items()]
    lines += [
        "",
        "Cold init estimated per MemorySize (Lambda gives CPU in proportion to memory, one vCPU at 1769 MB; "
        "CPU time scaled, waiting kept; this machine's core taken as one vCPU):",
        "",
        "| MemorySize | " + " | ".join(name for name in cold if name not in FLOORS) + " |",
        "| ---: | " + " | ".join("---:" for name in cold if name not in FLOORS) + " |",
    ]
    for memory in MEMORY_SIZES:
        estimates = []
        for name, runs in cold.items():
            if name not in FLOORS:
                cpu, total = runs.median("cpu_ms"), runs.median("init_ms")
                estimates.append(f"{cpu * 1769 / memory + max(total - cpu, 0):.0f} ms")
        lines.append(f"| {memory} MB | " + " | ".join(estimates) + " |")
    if layer:
        lines += ["", "Largest parts of the layer, unzipped:", ""]
        lines += [f"- {name or '(top level)'}: {size / 2**20:.1f} MiB" for name, size in layer.packages[:8]]
    return "\n".join(lines)


def write(path: Path, command: str, body: str) -> None:
    block = f"{START}\n{body}\n{END}"
    text = path.read_text() if path.exists() else f"# Performance\n\n{START}\n{END}\n"
    if START not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + block + tail)
    print(f"\nwritten to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({command})")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.monotonic()
    layer = measure_layer(build=not args.quick)
    site, site_note = lambda_site(build=not args.quick)
    with local_stack() as stack:
        cold = measure_cold(stack, args.runs, site)
        anatomy = measure_cold(stack, args.runs, site, anatomy=True)
        restored = measure_restore(stack, args.runs, site)
        warm = measure_warm(stack, args.iterations)
        capacity = measure_capacity(stack)
        # Keep-alive first: the webhook figure's connections would otherwise be due in its run too.
        keepalive = measure_keepalive(stack, args.keepalive)
        webhooks = measure_webhooks(stack, 20 if args.quick else 300)
    modules = sorted(
        set(cold["InitiateFunction"].runs[0]["modules"]) | set(cold["CallbackFunction"].runs[0]["modules"])
    )
    compile_ms = compile_cost(modules)
    command = "make bench" if not args.quick else "python -m bench --quick"
    if argv is None and len(sys.argv) > 1:
        command = "python -m bench " + " ".join(sys.argv[1:])
    body = "\n".join(
        [
            f"Reproduce with `{command}` (from the repository root). Last run: "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()} on "
            f"{platform.machine()}, {_cpus()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), "
            f"{time.monotonic() - started:.0f} s. "
            f"Cold starts import from {site_note}.",
            "",
            table(cold, restored, warm, capacity, layer, compile_ms, args.runs, args.iterations),
            webhook_rows(webhooks),
            "",
            anatomy_table(anatomy, cold["floor"], cold["card-floor"]),
            "",
            restore_table(restored),
            "",
            warm_split(warm),
            "",
            details(cold, capacity, layer),
            "",
            keepalive_section(keepalive),
        ]
    )
    print(body)
    if args.output:
        write(args.output, command, body)
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
