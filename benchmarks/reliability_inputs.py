"""Issue 30's cases, each run for real through the CLI as a user meets it, written into docs/reliability.md (the
`reliability_inputs` section): inputs never deleted, a live run locked, data read as it is, numbers range-checked,
a full disk, killed writers' leftovers, ONNX Runtime's side files, and the same protections on `edgedistill tune`.

    python benchmarks/reliability_inputs.py      # also run by benchmarks/reliability.py (part `inputs`)

The full-disk case mounts a tmpfs, so run it as root.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from record import header, replace_section
from reliability_data import digits_pngs, tiny, wine, wine_cfg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
def write(folder: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(cfg))
    return folder / name


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedistill", *args], capture_output=True, text=True,
                          env=env or ENV, cwd=cwd, timeout=900)


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgedistill", *args], env=env or ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool]) -> None:
    while not ready() and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise SystemExit(f"ended before the kill: {proc.stderr.read()[-500:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def said(proc: subprocess.CompletedProcess, tmp: Path) -> str:
    """exit | traceback | stderr lines | the last line, as the table shows them."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    last = (lines[-1] if lines else "").replace("|", "\\|").replace(str(tmp), "DIR")
    return f"{proc.returncode} | {'yes' if 'Traceback' in proc.stderr else 'no'} | {len(lines)} | {last}"


def snapshot(*files: Path) -> dict:
    return {f: f.read_bytes() for f in files}


def overwrite_keeps_inputs(tmp: Path) -> str:
    out = tmp / "run"
    cli("run", str(write(tmp, tiny())), "--out", str(out), "--quiet")
    data = wine(out / "data" / "wine.csv")
    (out / "devices.yaml").write_text(yaml.safe_dump({"my_board": {
        "description": "mine", "flash_bytes": 2_000_000, "ram_bytes": 512_000, "cores": 1, "dtypes": ["fp32"],
        "weights_in_ram": True}}))
    cfg = wine_cfg(str(data), 1) | {"device": "my_board", "device_catalog": str(out / "devices.yaml")}
    kept = snapshot(data, out / "devices.yaml", write(out, cfg, "my.yaml"))
    proc = cli("run", str(out / "my.yaml"), "--out", str(out), "--overwrite", "--quiet")
    return f"{said(proc, tmp)} | config, data and catalogue {'unchanged' if snapshot(*kept) == kept else 'LOST'}"


def overwrite_own_config(tmp: Path) -> str:
    out = tmp / "run"
    cli("run", str(write(tmp, tiny())), "--out", str(out), "--quiet")
    before = snapshot(out / "config.yaml", out / "metrics.json")
    proc = cli("run", str(out / "config.yaml"), "--out", str(out), "--overwrite", "--quiet")
    return f"{said(proc, tmp)} | run folder {'unchanged' if snapshot(*before) == before else 'CHANGED'}"


def live_run_and_four_commands(tmp: Path) -> str:
    out = tmp / "run"
    cli("run", str(write(tmp, tiny())), "--out", str(out), "--quiet")
    data = wine(out / "wine.csv")
    kept = snapshot(data, write(out, wine_cfg(str(data), 300), "my.yaml"))
    live = start("run", str(out / "my.yaml"), "--out", str(out), "--overwrite", "--quiet")
    while f'"pid": {live.pid},' not in (out / ".edgedistill-lock").read_text() and live.poll() is None:
        time.sleep(0.02)
    other = write(tmp, tiny(), "other.yaml")
    tries = [["run", str(other), "--out", str(out)], ["run", str(other), "--out", str(out), "--overwrite"],
             ["run", "--resume", str(out)], ["export", str(out), "--format", "onnxruntime-fp32"]]
    procs = [subprocess.Popen([sys.executable, "-m", "edgedistill", *t], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for t in tries]
    done = [subprocess.CompletedProcess(p.args, p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    named = sum(f"process {live.pid} " in p.stderr and p.returncode == 2 for p in done)
    code = live.wait()
    intact = (out / "metrics.json").is_file() and snapshot(*kept) == kept
    return (f"{code} | no | - | 4 commands during it: {named} of 4 stopped in one line naming its PID, e.g. "
            f"{said(done[1], tmp).split(' | ')[-1][:160]}... | live run {'finished intact' if intact else 'BROKEN'}, "
            "its inputs unchanged")


def killed_wine(tmp: Path) -> Path:
    a = tmp / "a"
    wine(a / "wine.csv")
    write(a, wine_cfg("wine.csv"))
    killed = tmp / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "run", "exp.yaml", "--out", str(killed), "--quiet"],
                            cwd=a, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when(proc, lambda: (killed / "state" / "student_scratch.pt").exists())
    return killed


def scores(run: Path) -> dict:
    return {r: m["test"]["accuracy"] for r, m in json.loads((run / "metrics.json").read_text())["models"].items()}


def resume_from_another_folder(tmp: Path) -> str:
    killed = killed_wine(tmp)
    whole = tmp / "whole"
    cli("run", "exp.yaml", "--out", str(whole), "--quiet", cwd=tmp / "a")
    wine(tmp / "b" / "wine.csv", shuffle=True)
    proc = cli("run", "--resume", str(killed), "--quiet", cwd=tmp / "b")
    same = proc.returncode == 0 and scores(killed) == scores(whole)
    return (f"{said(proc, tmp)} | read DIR/a/wine.csv as recorded; test accuracy of every model "
            f"{'equal to' if same else 'DIFFERENT from'} the uninterrupted run's ({scores(whole)['teacher']:.4f} "
            "teacher)")


def resume_after_data_changed(tmp: Path) -> str:
    killed = killed_wine(tmp)
    wine(tmp / "a" / "wine.csv", shuffle=True)
    proc = cli("run", "--resume", str(killed), "--quiet")
    return f"{said(proc, tmp)} | metrics.json {'written' if (killed / 'metrics.json').exists() else 'not written'}"


def inputs_record_edited(tmp: Path) -> str:
    killed = killed_wine(tmp)
    record = killed / "inputs.json"
    record.write_text(record.read_text().replace('"kind": "file"', '"kind": "link"', 1))
    proc = cli("run", "--resume", str(killed), "--quiet")
    return f"{said(proc, tmp)} | metrics.json {'written' if (killed / 'metrics.json').exists() else 'not written'}"


def export_after_data_changed(tmp: Path) -> str:
    cfg = write(tmp, wine_cfg(str(wine(tmp / "wine.csv")), 2))
    cli("run", str(cfg), "--out", str(tmp / "run"), "--quiet")
    wine(tmp / "wine.csv", shuffle=True)
    return f"{said(cli('export', str(tmp / 'run'), '--format', 'onnxruntime-fp32'), tmp)} | nothing exported"


def onnx_external(path: Path, seed: int) -> Path:
    import torch
    import torch.nn as nn

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    torch.onnx.export(model, (torch.zeros(2, 1, 40),), str(path), dynamo=True, external_data=True, verbose=False,
                      input_names=["input"], output_names=["out"], dynamic_shapes=({0: torch.export.Dim("b")},))
    return path


def onnx_external_seeds(tmp: Path) -> str:
    cfg = tiny() | {"teacher": {"model": "onnx", "args": {"path": str(onnx_external(tmp / "t" / "t.onnx", 0))}}}
    proc = cli("run", str(write(tmp, cfg)), "--out", str(tmp / "s"), "--seeds", "2", "--quiet")
    return f"{said(proc, tmp)} | seed_0 keeps t.onnx and t.onnx.data; seed_1 read them"


def onnx_weights_changed(tmp: Path) -> str:
    teacher, other = onnx_external(tmp / "t" / "t.onnx", 0), onnx_external(tmp / "u" / "t.onnx", 1)
    cfg = tiny() | {"teacher": {"model": "onnx", "args": {"path": str(teacher)}}}
    cfg["distill"] = {"cache": {"enabled": True, "views": 2}}
    cfg["student"]["train"]["epochs"] = 30
    out = tmp / "run"
    kill_when(start("run", str(write(tmp, cfg)), "--out", str(out), "--quiet"),
              lambda: (out / "state" / "student_scratch.pt").exists())
    shutil.copyfile(other.parent / "t.onnx.data", teacher.parent / "t.onnx.data")
    return f"{said(cli('run', '--resume', str(out), '--quiet'), tmp)} | the cached teacher outputs are not reused"


def sixteen_bit_pngs(tmp: Path) -> str:
    from PIL import Image

    for cls, flip in (("up", False), ("down", True)):
        for i in range(8):
            ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # a 256-level gradient over 16 bits
            (tmp / "imgs" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.flipud(ramp) if flip else ramp).save(tmp / "imgs" / cls / f"{i}.png")
    cfg = tiny({"name": "image_folder", "path": str(tmp / "imgs"), "limit_train": None, "limit_test": None},
               "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]})
    env = {**ENV, "EDGEDISTILL_CACHE": str(tmp / "cache")}
    proc = cli("run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet", env=env)
    (meta,) = (tmp / "cache").glob("packs/*/*/meta.json")
    m = json.loads(meta.read_text())
    levels = len(np.unique(np.fromfile(meta.parent / "images.u8", dtype=m["dtype"])))
    return f"{said(proc, tmp)} | packed as {m['dtype']}: {levels} levels of the 256 kept"


def symlinked_class(tmp: Path) -> str:
    root = digits_pngs(tmp / "digits")
    (root / "nine").symlink_to(root / "9", target_is_directory=True)
    cfg = tiny({"name": "image_folder", "path": str(root)}, "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]})
    return f"{said(cli('run', str(write(tmp, cfg)), '--out', str(tmp / 'run')), tmp)} | no run folder"


def config_case(change: Callable[[dict], None], *extra: str) -> Callable[[Path], str]:
    def case(tmp: Path) -> str:
        cfg = tiny()
        change(cfg)
        t0 = time.perf_counter()
        proc = cli("run", str(write(tmp, cfg)), "--out", str(tmp / "run"), *extra)
        return f"{said(proc, tmp)} | after {time.perf_counter() - t0:.1f} s, no run folder"
    return case


def huge_views(cfg: dict) -> None:
    cfg["data"]["augment"] = {"crop_padding": 2}
    cfg["distill"] = {"cache": {"enabled": True, "views": 1099511627776, "max_bytes": 2**80}}


def full_disk_in_torch_save(tmp: Path) -> str:
    disk = tmp / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)]).returncode:
        return "- | - | - | skipped: mounting a tmpfs needs root | -"
    try:
        proc = cli("run", str(write(tmp, tiny())), "--out", str(disk / "run"), "--quiet")
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        again = cli("run", "--resume", str(disk / "run"), "--quiet")
        return f"{said(proc, tmp)} | after freeing space, `--resume` exit {again.returncode}"
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def killed_packer(tmp: Path) -> str:
    env = {**ENV, "EDGEDISTILL_CACHE": str(tmp / "cache")}
    cfg = write(tmp, tiny({"name": "image_folder", "path": str(digits_pngs(tmp / "digits"))}, "mlp", "mlp",
                          {"hidden": [16]}, {"hidden": [8]}))
    kill_when(start("run", str(cfg), "--out", str(tmp / "a"), env=env),
              lambda: bool(list((tmp / "cache").glob("packs/*/.*.tmp-*"))))
    left = sum(f.stat().st_size for f in (tmp / "cache").glob("packs/*/.*.tmp-*/*"))
    time.sleep(2.5)
    proc = cli("run", str(cfg), "--out", str(tmp / "b"), "--quiet", env=env)
    after = list((tmp / "cache").glob("packs/*/.*.tmp-*"))
    return f"{said(proc, tmp)} | the kill left a {left:,}-byte temporary pack; after the next run: {len(after)} left"


def killed_cache_build(tmp: Path) -> str:
    cfg = tiny({"limit_train": 2000, "augment": {"crop_padding": 2}})
    cfg["distill"] = {"cache": {"enabled": True, "views": 16}}
    out = tmp / "run"
    kill_when(start("run", str(write(tmp, cfg)), "--out", str(out), "--quiet"),
              lambda: bool(list((out / "cache").glob(".teacher_outputs.tmp-*"))))
    proc = cli("run", "--resume", str(out), "--quiet")
    left = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    return f"{said(proc, tmp)} | temporary files in the finished run: {len(left)}"


def stale_lock(tmp: Path) -> str:
    cfg = write(tmp, wine_cfg(str(wine(tmp / "wine.csv")), 20))
    out = tmp / "run"
    kill_when(start("run", str(cfg), "--out", str(out), "--quiet"),
              lambda: (out / "state" / "student_scratch.pt").exists())
    return f"{said(cli('run', '--resume', str(out), '--quiet'), tmp)} | the dead run's lock file did not block it"


def ort_home(tmp: Path) -> str:
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in ENV.items() if k not in ("CI", "ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), EDGEDISTILL_CACHE=str(tmp / "cache"))
    cfg = tiny() | {"device": "host", "deploy": {"enabled": True, "latency_runs": 5, "calibration_samples": 16,
                                                  "formats": ["onnxruntime-fp32", "onnxruntime-int8"]}}
    proc = cli("run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet", env=env)
    found = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    return f"{said(proc, tmp)} | files written under HOME: {found or 'none'}"


def compare_into_users_folder(tmp: Path) -> str:
    run = tmp / "run"
    cli("run", str(write(tmp, tiny())), "--out", str(run), "--quiet")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "report.html").write_text("my own report")
    proc = cli("compare", str(run), str(run), "--out", str(tmp / "mine"))
    mine = (tmp / "mine" / "report.html").read_text() == "my own report"
    again = [cli("compare", str(run), str(run), "--out", str(tmp / "cmp")).returncode for _ in range(2)]
    return (f"{said(proc, tmp)} | the user's report.html {'unchanged' if mine else 'REPLACED'}; into a folder "
            f"compare made, twice: exit {again}")


def tune_study_as_a_run(tmp: Path) -> str:
    cfg, study = write(tmp, tiny()), tmp / "study"
    cli("tune", str(cfg), "--out", str(study), "--trials", "1", "--seeds", "0", "--methods", "kd", "--quiet")
    files = lambda: {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in study.rglob("*") if p.is_file()}
    before = files()
    resume = cli("run", "--resume", str(study), "--quiet")
    over = cli("run", str(cfg), "--out", str(study), "--overwrite", "--quiet")
    return (f"{said(resume, tmp)} | `--overwrite` too: exit {over.returncode}, {said(over, tmp).split(' | ')[-1]}; "
            f"the study's {len(before)} files {'unchanged' if files() == before else 'CHANGED'}")


def tune_numbers(tmp: Path) -> str:
    cfg, t0 = write(tmp, tiny()), time.perf_counter()
    procs = [cli("tune", str(cfg), "--out", str(tmp / "s"), "--trials", "1", "--quiet", *extra)
             for extra in (["--seeds", "1001"], ["--timeout", "nan"], ["--heartbeat", "10000000000"])]
    return (f"{said(procs[0], tmp)} | all 3 before the study, in {time.perf_counter() - t0:.1f} s: exits "
            f"{[p.returncode for p in procs]}, {sum(len(p.stderr.strip().splitlines()) for p in procs)} stderr "
            f"lines; no study folder: {not (tmp / 's').exists()}")


CASES: list[tuple[str, Callable[[Path], str]]] = [
    ("`--overwrite` over a run that holds the config, the data CSV and the device catalogue", overwrite_keeps_inputs),
    ("`run RUN/config.yaml --out RUN --overwrite` (the run would replace its own input)", overwrite_own_config),
    ("a second `run`, `--overwrite`, `--resume` and `export` on a live run (its data and config inside)",
     live_run_and_four_commands),
    ("wine run (relative data.path) killed, resumed from another folder holding another wine.csv",
     resume_from_another_folder),
    ("wine run killed, its CSV's labels shuffled, then `--resume`", resume_after_data_changed),
    ("wine run killed, its inputs.json edited by hand (an input's `kind` made `link`), then `--resume`",
     inputs_record_edited),
    ("`export` of a finished run whose CSV changed", export_after_data_changed),
    ("ONNX teacher with external data (t.onnx + t.onnx.data), `--seeds 2`", onnx_external_seeds),
    ("ONNX teacher's t.onnx.data replaced after a kill, then `--resume`", onnx_weights_changed),
    ("a folder of 16-bit PNGs (a 256-level gradient each)", sixteen_bit_pngs),
    ("a class folder symlinked to another (digits/nine -> digits/9)", symlinked_class),
    ("`data.limit_train: 10` on digits (10 classes)", config_case(lambda c: c["data"].update(name="digits",
                                                                                            limit_train=10))),
    ("`seed: -1`", config_case(lambda c: c.update(seed=-1))),
    ("`seed: 4294967296` (2^32)", config_case(lambda c: c.update(seed=2**32))),
    ("`seed: 2^70`", config_case(lambda c: c.update(seed=2**70))),
    ("`seed: 4294967295` with `--seeds 2`", config_case(lambda c: c.update(seed=2**32 - 1), "--seeds", "2")),
    ("`distill.cache.views: 1099511627776`, max_bytes 2^80, augmentation on", config_case(huge_views)),
    ("`student.train.lr: .inf`", config_case(lambda c: c["student"]["train"].update(lr=float("inf")))),
    ("the disk fills inside torch.save (a 3 MiB tmpfs: the teacher's state file does not fit)",
     full_disk_in_torch_save),
    ("SIGKILL while packing an image folder, then another run on it", killed_packer),
    ("SIGKILL while the teacher cache builds, then `--resume`", killed_cache_build),
    ("SIGKILL of a run, then `--resume` (its lock file is left behind)", stale_lock),
    ("a deployed run (ONNX Runtime formats) with HOME in a fresh folder", ort_home),
    ("`compare A B --out DIR` where DIR holds the user's own report.html", compare_into_users_folder),
    ("`run --resume STUDY`, then `run --out STUDY --overwrite`, on an `edgedistill tune` study folder",
     tune_study_as_a_run),
    ("`tune --seeds 1001`, `--timeout nan`, `--heartbeat 10000000000`", tune_numbers),
]


def table(tmp: Path) -> str:
    rows = ["| # | what the user did | exit | traceback | stderr lines | message (last line) | result |",
            "|---|---|---|---|---|---|---|"]
    for i, (what, case) in enumerate(CASES, 1):
        folder = tmp / f"case{i}"
        folder.mkdir()
        rows.append(f"| {i} | {what} | {case(folder)} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        body = table(Path(d))
    replace_section("reliability_inputs", f"{header(time.perf_counter() - t0)}\n{body}\n", doc=DOC)


if __name__ == "__main__":
    main()
