"""`edgedistill tune` with two worker processes on one PostgreSQL study, one of them killed (SIGKILL) in the middle
of a trial and started again: the study must end with exactly the asked trials, none lost and none counted twice.

    python benchmarks/tune_workers.py [--trials 8] [--student-epochs 8] [--teacher-epochs 8] \
        [--methods kd,dist,nkd,dkd] [--key tune_workers]

MNIST-1D (the packaged default config, deployment off), a throwaway PostgreSQL server from Debian's package on a
free localhost port (tests/postgres_server.py), both workers in one study folder on this machine.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from postgres_server import postgres_server, why_unavailable  # noqa: E402
from record import header, replace_section  # noqa: E402

from edgedistill.cli.tune.storage import optuna_quiet, redacted  # noqa: E402

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def worker(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as fh:
        return subprocess.Popen([sys.executable, "-m", "edgedistill", "tune", *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=ENV)


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    with optuna_quiet():
        return optuna.load_study(study_name=name, storage=url).trials


def kill_in_a_trial(proc: subprocess.Popen, url: str, name: str) -> int:
    """SIGKILL `proc` once a trial it runs has finished an epoch; returns that trial's number."""
    mine = f":{proc.pid}"
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            running = [t for t in trials_of(url, name) if t.state == TrialState.RUNNING and t.intermediate_values
                       and t.user_attrs.get("worker", "").endswith(mine)]
        except (KeyError, ValueError):  # the study is not created yet
            continue
        if running:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return running[0].number
    raise SystemExit("the worker ended before it could be killed in a trial; raise --trials or --student-epochs")


def verdict(trials: list[optuna.trial.FrozenTrial], asked: int, killed: int, pids: dict[str, int]) -> list[str]:
    finished = [t for t in trials if t.state in FINISHED]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    origins = Counter(t.system_attrs.get("failed_trial", t.number) for t in finished)
    states = Counter(t.state.name.lower() for t in trials)
    workers = Counter(t.user_attrs.get("worker") for t in finished)
    return [f"- trials asked: {asked}; finished (complete or pruned): {len(finished)}; every state: "
            f"{', '.join(f'{n} {s}' for s, n in sorted(states.items()))}",
            f"- killed in trial {killed} (state now {trials[killed].state.name.lower()}); its retries: "
            + ", ".join(f"trial {t.number} ({t.state.name.lower()}, same recipe: {t.params == trials[killed].params})"
                        for t in retries),
            f"- recipes finished more than once (a trial and its retry both counted): "
            f"{sum(n > 1 for n in origins.values())}",
            "- finished trials by process: " + ", ".join(
                f"{who} {sum(n for w, n in workers.items() if w and w.endswith(f':{pid}'))}"
                for who, pid in pids.items())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--student-epochs", type=int, default=8)
    ap.add_argument("--teacher-epochs", type=int, default=8)
    ap.add_argument("--methods", default="kd,dist,nkd,dkd")
    ap.add_argument("--key", default="tune_workers")
    args = ap.parse_args()
    why = why_unavailable()
    if why:
        raise SystemExit(why)
    t0 = time.perf_counter()
    with postgres_server() as url, tempfile.TemporaryDirectory() as tmp:
        out, log, name = Path(tmp) / "study", Path(tmp) / "workers.log", "mnist1d_tune_bench"
        common = ["--out", str(out), "--storage", url, "--study-name", name, "--trials", str(args.trials),
                  "--methods", args.methods, "--seeds", "0", "--heartbeat", "5", "--quiet",
                  "--set", "deploy.enabled=false", "--set", f"student.train.epochs={args.student_epochs}",
                  "--set", f"teacher.train.epochs={args.teacher_epochs}"]
        first, second = worker(common, log), worker(common, log)
        killed = kill_in_a_trial(first, url, name)
        restarted = worker(common, log)
        codes = [second.wait(), restarted.wait()]
        if any(codes):
            raise SystemExit(f"a worker failed ({codes}):\n{log.read_text()[-3000:]}")
        trials = trials_of(url, name)
        md = (out / "tune.md").read_text()
        after = md[md.index("## Trials"):]
        table = "\n".join(ln for ln in after[:after.find("\n## ", 3)].splitlines() if ln.startswith("|"))
        best = next((ln for ln in md.splitlines() if ln.startswith("Trial ")), "no trial completed")
        body = (f"### edgedistill tune: 2 worker processes on one PostgreSQL study, one killed in a trial\n\n"
                f"{header(time.perf_counter() - t0)}"
                f"- storage: PostgreSQL 15 from Debian's package on localhost ({redacted(url)}), both workers in "
                f"one study folder; MNIST-1D, the packaged default config with deployment off, teacher "
                f"{args.teacher_epochs} epochs, each trial's student up to {args.student_epochs} epochs, methods "
                f"{args.methods}, heartbeat 5 s (a trial silent for 15 s is taken as dead)\n"
                + "\n".join(verdict(trials, args.trials, killed, {
                    "the first worker (killed)": first.pid, "the second worker": second.pid,
                    "the first one restarted": restarted.pid})) + f"\n- best on validation: {best}\n\n{table}\n")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()
