"""Runs that survive a kill -9 and resume to the same result, and the same run spread over two DDP processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import TESTS, run_cli, tiny_config, write_digits_folder
from test_cli import assert_one_line_error


def digits_config(**extra) -> dict:
    """Small enough to run in seconds, long enough (several epochs per model) to be killed in the middle."""
    cfg = tiny_config("digits", "convnet", "convnet", {"channels": [8, 16]}, {"channels": [4, 8]},
                      augment={"crop_padding": 1})
    cfg["data"].pop("limit_test")
    cfg["deterministic"] = True
    for role, epochs in (("teacher", 3), ("student", 6)):
        cfg[role]["train"] = {"epochs": epochs, "batch_size": 32, "lr": 0.01}
    cfg.update(extra)
    return cfg


def from_image_folder(cfg: dict, tmp_path, source: str) -> dict:
    """The same digits as PNG files: the packed, streamed image_folder path must resume and shard alike."""
    if source == "image_folder":
        cfg["data"].update(name="image_folder", path=str(write_digits_folder(tmp_path / "digits_png")))
    return cfg


def scores(run_dir) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {role: (r["test"]["accuracy"], r["test"]["f1_macro"], [h["val_accuracy"] for h in r["train"]["history"]])
            for role, r in m["models"].items()}


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1"}


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """An edgedistill command in its own process, to be killed; its stderr is kept for the reason it ended early."""
    return subprocess.Popen([sys.executable, "-m", "edgedistill", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 180) -> None:
    """SIGKILL the command once ready() holds (a file it writes has appeared), as a crash or the OOM killer would."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the command ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("source", ["arrays", "image_folder"])
def test_sigkill_mid_epoch_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, source):
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(yaml.safe_dump(from_image_folder(digits_config(), tmp_path, source)))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli("run", str(cfg_file), "--out", str(whole), "--quiet",
                   env_extra={"OMP_NUM_THREADS": "1"}).returncode == 0

    proc = start("run", str(cfg_file), "--out", str(killed), "--quiet")
    state = killed / "state" / "student_scratch.pt"  # appears after the scratch student's first epoch
    kill_when(proc, state.exists, timeout=120)
    assert not (killed / "metrics.json").exists()
    assert all(p.name.startswith(".") for p in killed.rglob("*.tmp")), "a partial file carries a final name"

    resumed = run_cli("run", "--resume", str(killed), env_extra={"OMP_NUM_THREADS": "1"})  # progress lines on
    assert resumed.returncode == 0, resumed.stderr
    counted = [ln.split(",")[0].rsplit(" ", 1)[1] for ln in resumed.stderr.splitlines()
               if ln.startswith("train student_scratch: epoch")]  # goes on from the epochs done: 3/6 .. 6/6
    assert counted == [f"{e}/6" for e in range(int(counted[0].split("/")[0]), 7)] and counted[0] != "1/6", counted
    assert not list(killed.rglob("*.tmp")), "a partial file was left under the run folder"
    assert scores(killed) == scores(whole)
    assert not (killed / "state").exists()  # a finished run keeps no resume state
    log = [json.loads(line) for line in (killed / "logs" / "student_scratch.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(1, 7))


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    assert_one_line_error(run_cli("run", "--resume", str(tmp_path)), "no config.yaml there")
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_config()))
    done = tmp_path / "done"
    assert run_cli("run", str(cfg_file), "--out", str(done), "--quiet").returncode == 0
    assert_one_line_error(run_cli("run", "--resume", str(done)), "that run has finished")
    assert_one_line_error(run_cli("run", str(cfg_file), "--resume", str(done)), "give only the run folder")
    (done / "metrics.json").unlink()
    (done / "state").mkdir()
    (done / "state" / "teacher.pt").write_bytes(b"truncated")
    assert_one_line_error(run_cli("run", "--resume", str(done)), "state/teacher.pt is unreadable")


@pytest.mark.parametrize("source", ["arrays", "image_folder"])
def test_two_ddp_processes_match_one_process(tmp_path, source):
    """torchrun with gloo: each process takes half of every global batch, so an MLP (no batch norm, no dropout)
    trains to the same predictions as one process; only rank 0 writes (and packs an image folder)."""
    cfg = from_image_folder(digits_config(), tmp_path, source)
    for role, hidden in (("teacher", [64]), ("student", [16])):
        cfg[role].update(model="mlp", args={"hidden": hidden})
    cfg["data"]["augment"] = {"crop_padding": 0, "hflip": False}
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli("run", str(cfg_file), "--out", str(one), "--quiet",
                   env_extra={"OMP_NUM_THREADS": "1"}).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "edgedistill", "run", str(cfg_file), "--out", str(two), "--quiet"],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| student (KD) |") == 1  # the table is printed by rank 0 alone
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["environment"]["processes"] == 2 and m1["environment"]["processes"] == 1
    n_test = m1["dataset"]["n_test"]
    for role in ("teacher", "student_scratch", "student_kd"):
        a1, a2 = m1["models"][role]["test"]["accuracy"], m2["models"][role]["test"]["accuracy"]
        assert abs(a1 - a2) <= 1 / n_test + 1e-9, (role, a1, a2)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_resume_clears_temporary_files_a_killed_writer_left(tmp_path):
    from edgedistill.pipeline.rundir import remove_stale_temp_files

    (tmp_path / "state").mkdir()
    stale = tmp_path / "state" / ".student_kd.pt.ab12cd.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept = tmp_path / "state" / "student_kd.pt"
    kept.write_bytes(b"a whole one")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and kept.exists()
