"""A run folder belongs to one live process (issue 30): a second run, --overwrite, --resume or export on a live run
stops in one line naming its PID, the live run finishes intact with every input in place, and the lock of a killed
run never blocks its resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config
from test_inputs_sacred import run_files, start, wine_config, wine_csv
from test_reliability import cli_env


def wait_for(ready, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended first: {proc.stderr.read()}"


def all_at_once(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """The commands started together (a user's second shell, a script), each waited for."""
    procs = [subprocess.Popen([sys.executable, "-m", "edgedistill", *c], env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), p.stdout.read(), p.stderr.read())
            for p in procs]


def test_a_second_command_on_a_live_run_stops_naming_its_pid_and_the_run_finishes_intact(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    wine = wine_csv(out / "wine.csv")  # the live run's data and config live in the folder it replaces
    config = write_config(out, wine_config(str(wine), student_epochs=20), "my.yaml")
    inputs = {p: p.read_bytes() for p in (wine, config)}
    live = start("run", str(config), "--out", str(out), "--overwrite", "--quiet")
    wait_for(lambda: f'"pid": {live.pid},' in (out / ".edgedistill-lock").read_text(), live)  # it holds the folder
    os.kill(live.pid, signal.SIGSTOP)  # held where it stands, alive, while the other commands try: no race to win
    try:
        other = write_config(tmp_path, tiny_config(), "other.yaml")
        tries = all_at_once(["run", str(other), "--out", str(out)],
                            ["run", str(other), "--out", str(out), "--overwrite"],
                            ["run", "--resume", str(out)], ["export", str(out), "--format", "onnxruntime-fp32"])
    finally:
        os.kill(live.pid, signal.SIGCONT)
    for proc in tries:
        assert_one_line_error(proc, f"process {live.pid} ", "in use by edgedistill", "wait for it to finish")
    assert live.wait(timeout=600) == 0, live.stderr.read()
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["data"]["path"] == str(wine) and len(m["models"]["student_kd"]["train"]["history"]) == 20
    assert {p: p.read_bytes() for p in inputs} == inputs
    assert not (out / "state").exists()


def test_the_lock_of_a_killed_run_never_blocks_its_resume(tmp_path):
    cfg = write_config(tmp_path, wine_config(str(wine_csv(tmp_path / "wine.csv")), student_epochs=20))
    out = tmp_path / "run"
    proc = start("run", str(cfg), "--out", str(out), "--quiet")
    wait_for(lambda: (out / "state" / "student_scratch.pt").exists(), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert str(proc.pid) in (out / ".edgedistill-lock").read_text()  # the dead run's lock file is still there
    resumed = run_cli("run", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "metrics.json").is_file()


def test_seeds_hold_their_folder_and_each_seed_folder(tmp_path):
    cfg = write_config(tmp_path, wine_config(str(wine_csv(tmp_path / "wine.csv")), student_epochs=150))
    out = tmp_path / "seeds"
    live = start("run", str(cfg), "--out", str(out), "--seeds", "2", "--quiet")
    wait_for(lambda: (out / "seed_0" / "logs" / "teacher.jsonl").exists(), live)
    before = run_files(out / "seed_0")
    over, resume = all_at_once(["run", str(cfg), "--out", str(out), "--overwrite", "--seeds", "2"],
                               ["run", "--resume", str(out / "seed_0")])
    assert live.poll() is None, "the seeds ended before every command had tried"
    for proc in (over, resume):
        assert_one_line_error(proc, f"process {live.pid} ")
    # state/<role>.pt is the live run's own resume state, which it deletes once that model has finished training
    assert set(run_files(out / "seed_0")) >= {f for f in before if not f.startswith("state/")}
    assert live.wait(timeout=600) == 0, live.stderr.read()
    assert (out / "seeds.json").is_file() and (out / "seed_1" / "metrics.json").is_file()
