"""What experiment tracking adds to the demo's wall time, measured both ways in one run.

    python benchmarks/tracking_overhead.py [--rounds 5] [--seeds 3] [--set KEY=VALUE ...] [--key tracking_overhead]

Each round runs `make demo`'s command (`edgedistill run --seeds 3`, the packaged default) untracked, with
`--track mlflow` and with `--track tensorboard`, rotating the order round by round so that a slow spell of the
shared machine hits every variant alike. Every run is a fresh interpreter in its own empty folder, as a first-time
user's: MLflow creates its local store (./mlflow.db, artifacts in ./mlruns) there, so its set-up is counted each
time. The wall time is the whole CLI run. The machine is shared, and other work only ever adds time, so each
variant is scored by its best (shortest) run, as benchmarks/kd_throughput.py does; the medians and the CPU seconds
(user + system of the run's process and its children) are shown beside.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import header, replace_section

VARIANTS = {"untracked": [], "mlflow": ["--track", "mlflow"], "tensorboard": ["--track", "tensorboard"]}
TARGET = 0.03


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def demo_seconds(seeds: int, track: list[str], overrides: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one demo run in a new empty folder; checks that a tracked run really was tracked."""
    with tempfile.TemporaryDirectory(prefix="tracking_overhead_") as tmp:
        sets = [a for o in overrides for a in ("--set", o)]
        t0, c0 = time.perf_counter(), children_cpu()
        proc = subprocess.run([sys.executable, "-m", "edgedistill", "run", "--seeds", str(seeds), "--out", "demo",
                               "--quiet", *track, *sets], cwd=tmp, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - t0, children_cpu() - c0
        if proc.returncode != 0 or "warning" in proc.stderr:
            raise SystemExit(f"demo run {track} failed or warned:\n{proc.stderr[-2000:]}")
        first = Path(tmp) / "demo" / "seed_0"
        if "mlflow" in track and "run_id" not in json.loads((first / "tracking.json").read_text())["mlflow"]:
            raise SystemExit("the MLflow run was not recorded")
        if "tensorboard" in track and not any((first / "tensorboard").rglob("events.out.tfevents.*")):
            raise SystemExit("no TensorBoard event files were written")
    return seconds, cpu


def overhead(times: dict[str, list[float]], name: str) -> float:
    """The variant's best wall time over the best untracked one, minus 1."""
    return min(times[name]) / min(times["untracked"]) - 1


def table(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> str:
    rows = ["| variant | wall s, round by round | best wall | median wall | median CPU | overhead (best vs best) |",
            "|---|---|---|---|---|---|"]
    for name, values in times.items():
        over = "-" if name == "untracked" else f"{100 * overhead(times, name):+.1f}%"
        rows.append(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {min(values):.1f} s | "
                    f"{statistics.median(values):.1f} s | {statistics.median(cpu[name]):.1f} s | {over} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides for every variant (a shorter smoke check)")
    ap.add_argument("--key", default="tracking_overhead", help="the docs/benchmarks.md section to write")
    args = ap.parse_args()
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    names = list(VARIANTS)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, used = demo_seconds(args.seeds, VARIANTS[name], args.overrides)
            times[name].append(wall)
            cpu[name].append(used)
            print(f"round {r + 1}: {name} {wall:.1f} s wall, {used:.1f} s CPU", flush=True)
    worst = max(overhead(times, name) for name in names if name != "untracked")
    verdict = (f"Largest overhead {100 * worst:+.1f}% of the demo's wall time: "
               f"{'under' if worst < TARGET else 'NOT under'} the {100 * TARGET:.0f}% target.")
    load = f"- load average (1 min) at start and end: {load_start:.1f}, {os.getloadavg()[0]:.1f} (the machine is shared)\n"
    shortened = f", shortened: {', '.join(args.overrides)}" if args.overrides else ""
    body = (f"### Tracking overhead on the demo (`--seeds {args.seeds}`{shortened})\n\n"
            f"{header(time.perf_counter() - t_start)}"
            f"{load}\n{table(times, cpu)}\n\n{verdict}\n")
    print(body)
    replace_section(args.key, body)


if __name__ == "__main__":
    main()
