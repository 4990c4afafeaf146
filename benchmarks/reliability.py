"""Try every fault docs/reliability.md talks about, for real, and write what happened into that file.

    python benchmarks/reliability.py

1. Each bad input of the test suite's lists (tests/test_cli.py), through the CLI: exit code, traceback or not, the
   one line printed.
2. kill -9 of a run in the middle of an epoch, then `edgedistill run --resume`: the resumed run's test metrics
   against an uninterrupted run of the same deterministic config.
3. The same run as one process and as two DDP processes under torchrun (gloo): test accuracy of each model.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import tiny_config  # noqa: E402
from test_cli import BAD, BAD_FILES  # noqa: E402
from test_reliability import digits_config  # noqa: E402
from record import header, replace_section  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}


def cli(*args: str, launcher: tuple[str, ...] = ("-m", "edgedistill")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, env=ENV, timeout=600)


def write(folder: Path, cfg: dict) -> Path:
    f = folder / "exp.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def describe(mutate) -> str:
    """The case as a reader would name it: the function's name, or what the lambda changes in the config."""
    if mutate.__name__ != "<lambda>":
        return mutate.__name__.replace("_", " ")
    found = re.search(r"lambda c: (.*), [\"'].*[\"']\),?$", inspect.getsource(mutate).strip())
    return found.group(1) if found else "config change"


def bad_inputs(tmp: Path) -> str:
    rows = ["| # | input | exit | traceback | message |", "|---|---|---|---|---|"]
    cases = [(m, lambda c, t, m=m: m(c)) for m, _ in BAD] + [(m, m) for m, _ in BAD_FILES]
    for i, (named, make) in enumerate(cases, 1):
        folder = tmp / f"bad{i}"
        folder.mkdir()
        cfg = tiny_config()
        make(cfg, folder)
        proc = cli("run", str(write(folder, cfg)), "--out", str(folder / "run"), "--quiet")
        line = (proc.stderr.strip().splitlines() or [""])[-1].replace("|", "\\|").replace(str(folder), "DIR")
        rows.append(f"| {i} | `{describe(named)}` | {proc.returncode} | {'yes' if 'Traceback' in proc.stderr else 'no'} "
                    f"| {line} |")
    return "\n".join(rows)


def test_scores(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {role: r["test"]["accuracy"] for role, r in m["models"].items()}


def full_digits_config() -> dict:
    """The tests' deterministic digits config on the whole training split (the tests use 200 samples for speed)."""
    cfg = digits_config()
    cfg["data"].pop("limit_train")
    return cfg


def saved_epochs(state_dir: Path) -> str:
    import torch

    done = {p.stem: torch.load(p, weights_only=True) for p in sorted(state_dir.glob("*.pt"))}
    return ", ".join(f"{role} epoch {s['epoch']}{' (finished)' if s['finished'] else ''}" for role, s in done.items())


def kill_and_resume(tmp: Path) -> str:
    cfg = write(tmp, full_digits_config())
    whole, killed = tmp / "whole", tmp / "killed"
    assert cli("run", str(cfg), "--out", str(whole), "--quiet").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "run", str(cfg), "--out", str(killed), "--quiet"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "state" / "student_scratch.pt"
    while not state.exists() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.1)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = saved_epochs(killed / "state")
    partial = [p.name for p in killed.rglob("*.tmp")]
    resumed = cli("run", "--resume", str(killed), "--quiet")
    a, b = test_scores(whole), test_scores(killed)
    rows = ["| model | uninterrupted | killed + resumed | equal |", "|---|---|---|---|"]
    rows += [f"| {r} | {100 * a[r]:.4f}% | {100 * b[r]:.4f}% | {a[r] == b[r]} |" for r in a]
    return (f"digits (whole training split), deterministic, convnet teacher 3 epochs, convnet students 6 epochs. "
            f"Killed with SIGKILL (exit {proc.returncode}) 0.1 s after `state/student_scratch.pt` first appeared. "
            f"Saved states at the kill: {at_kill}. Partial files left: {len(partial)}. "
            f"`edgedistill run --resume` exit code {resumed.returncode}.\n\n" + "\n".join(rows))


def ddp(tmp: Path) -> str:
    cfg = full_digits_config()
    for role, hidden in (("teacher", [64]), ("student", [16])):
        cfg[role].update(model="mlp", args={"hidden": hidden})
    cfg["data"]["augment"] = {"crop_padding": 0, "hflip": False}
    f = write(tmp, cfg)
    one, two = tmp / "one", tmp / "two"
    assert cli("run", str(f), "--out", str(one), "--quiet").returncode == 0
    proc = cli("--standalone", "--nproc_per_node=2", "-m", "edgedistill", "run", str(f), "--out", str(two),
               "--quiet", launcher=("-m", "torch.distributed.run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = test_scores(one), test_scores(two)
    rows = ["| model | 1 process | 2 processes (gloo) | difference |", "|---|---|---|---|"]
    rows += [f"| {r} | {100 * a[r]:.2f}% | {100 * b[r]:.2f}% | {100 * (b[r] - a[r]):+.2f} pts |" for r in a]
    return ("digits (whole training split), MLP teacher and student (no batch norm, no dropout), global batch 32, 16 per process.\n\n"
            + "\n".join(rows))


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parts = {"bad_inputs": bad_inputs, "resume": kill_and_resume, "ddp": ddp}
        bodies = {}
        for key, fn in parts.items():
            (tmp / key).mkdir()
            bodies[key] = fn(tmp / key)
    head = header(time.perf_counter() - t0)
    for key, body in bodies.items():
        replace_section(f"reliability_{key}", f"{head}\n{body}\n", doc=DOC)
        print(body, "\n")


if __name__ == "__main__":
    main()
