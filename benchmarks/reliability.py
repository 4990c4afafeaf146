"""Try every fault docs/reliability.md talks about, for real, and write what happened into that file.

    python benchmarks/reliability.py

1. Each bad input of the test suite's lists (tests/test_cli.py, tests/test_hostile.py), through the CLI: exit code,
   traceback or not, the one line printed.
2. What a hostile new user tried beyond a bad config (issue 16): --overwrite on their own folder, path traversal in
   `name`, a YAML alias bomb, NaN in their data, phantom classes, unwritable --out, an incomplete metrics.json. Each
   row also says whether any file outside the run folder changed.
3. A disk that fills up (a real tmpfs) before the run, during training and during export: the run must end in one
   line, stay resumable, and `--resume` must finish it once space is freed.
4. kill -9 of a run in the middle of an epoch, then `edgedistill run --resume`: the resumed run's test metrics
   against an uninterrupted run of the same deterministic config.
5. The same run as one process and as two DDP processes under torchrun (gloo): test accuracy of each model.
"""
from __future__ import annotations

import argparse
import contextlib
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
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import tiny_config  # noqa: E402
from test_cli import BAD, BAD_FILES  # noqa: E402
from test_hostile import HOSTILE_FILES, alias_bomb_config, deployed, fill_when  # noqa: E402
from test_reliability import digits_config  # noqa: E402
from record import header, replace_section  # noqa: E402
import reliability_device  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
# the caller's PYTHONPATH follows the tests' folder, so a checkout run beside an installed copy runs its own code
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT / "tests"), os.environ.get("PYTHONPATH")))),
       "OMP_NUM_THREADS": "1"}


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
    cases = [(m, lambda c, t, m=m: m(c)) for m, _ in BAD] + [(m, m) for m, _ in BAD_FILES + HOSTILE_FILES]
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


def files_outside(tmp: Path, run_dirs: tuple[str, ...] = ("run",)) -> dict[str, bytes]:
    return {str(f.relative_to(tmp)): f.read_bytes() for f in sorted(tmp.rglob("*"))
            if f.is_file() and f.relative_to(tmp).parts[0] not in run_dirs}


def last_line(proc: subprocess.CompletedProcess, tmp: Path) -> str:
    return (proc.stderr.strip().splitlines() or [""])[-1].replace("|", "\\|").replace(str(tmp), "DIR")


def finished_run(tmp: Path) -> Path:
    """One tiny finished run, for the cases that start from one (its teacher.pt, its metrics.json)."""
    out = tmp / "done"
    if not (out / "metrics.json").exists():
        assert cli("run", str(write(tmp, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    return out


def own_folder(tmp: Path) -> Path:
    own = tmp / "run"
    (own / "notes").mkdir(parents=True)
    (own / "notes" / "plan.txt").write_text("months of work")
    return own


def overwrite_own_folder_with_a_typo(tmp: Path) -> list[str]:
    cfg = tiny_config()
    cfg["data"].update(name="csv", path=str(tmp / "dta.csv"))
    return ["run", str(write(tmp, cfg)), "--out", str(own_folder(tmp)), "--overwrite"]


def overwrite_own_folder(tmp: Path) -> list[str]:
    return ["run", str(write(tmp, tiny_config())), "--out", str(own_folder(tmp)), "--overwrite"]


def config_with(change: Callable[[dict, Path], None]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        cfg = tiny_config()
        change(cfg, tmp)
        return ["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"]
    return setup


def yaml_text(text: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "exp.yaml").write_text(text)
        return ["run", str(tmp / "exp.yaml"), "--out", str(tmp / "run")]
    return setup


def name_escaping_runs(name: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        return ["run", str(write(tmp, tiny_config())), "--set", f"name={name}"]
    return setup


def csv_with_nan(c: dict, tmp: Path) -> None:
    (tmp / "t.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)) + "1,nan,0\n")
    c["data"] = {"name": "csv", "path": str(tmp / "t.csv")}


def csv_with_inf(c: dict, tmp: Path) -> None:
    (tmp / "t.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)) + "inf,1,0\n")
    c["data"] = {"name": "csv", "path": str(tmp / "t.csv")}


def npz_with_nan(c: dict, tmp: Path) -> None:
    import numpy as np

    x = np.zeros((40, 3), dtype=np.float32)
    x[5, 1] = np.nan
    np.savez(tmp / "d.npz", x_train=x, y_train=np.arange(40) % 2, x_test=x[:4] * 0, y_test=np.arange(4) % 2)
    c["data"] = {"name": "npz", "path": str(tmp / "d.npz")}


def csv_test_label_unseen_in_training(c: dict, tmp: Path) -> None:
    (tmp / "train.csv").write_text("a,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(30)))
    (tmp / "test.csv").write_text("a,label\n1,a\n2,c\n")
    c["data"] = {"name": "csv", "path": str(tmp / "train.csv"), "options": {"test_path": str(tmp / "test.csv")}}


def npz_test_label_unseen_in_training(c: dict, tmp: Path) -> None:
    import numpy as np

    np.savez(tmp / "d.npz", x_train=np.zeros((40, 3)), y_train=np.arange(40) % 2, x_test=np.zeros((2, 3)),
             y_test=np.array([0, 7]))
    c["data"] = {"name": "npz", "path": str(tmp / "d.npz")}


def empty_class_folder(c: dict, tmp: Path) -> None:
    from test_hostile import _images

    _images(tmp / "imgs", ["cat", "dog"])
    (tmp / "imgs" / "bird").mkdir()
    c["data"] = {"name": "image_folder", "path": str(tmp / "imgs")}


def teacher_checkpoint_with_nan(c: dict, tmp: Path) -> None:
    import torch

    ckpt = torch.load(finished_run(tmp.parent) / "teacher.pt", weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(ckpt, tmp / "nan_teacher.pt")
    c["teacher"]["checkpoint"] = str(tmp / "nan_teacher.pt")


def out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "a_file").write_text("x")
    return ["run", str(write(tmp, tiny_config())), "--out", str(tmp / "a_file" / "run")]


def report_of_incomplete_metrics(tmp: Path) -> list[str]:
    done = finished_run(tmp.parent)
    (tmp / "run").mkdir()
    m = json.loads((done / "metrics.json").read_text())
    del m["models"]["teacher"]["test"]["accuracy"]
    (tmp / "run" / "metrics.json").write_text(json.dumps(m))
    return ["report", str(tmp / "run")]


def resume_a_finished_run(tmp: Path) -> list[str]:
    import shutil

    shutil.copytree(finished_run(tmp.parent), tmp / "run")
    return ["run", "--resume", str(tmp / "run")]


HOSTILE: list[tuple[str, Callable[[Path], list[str]]]] = [
    ("--overwrite on the user's own folder, data.path misspelt", overwrite_own_folder_with_a_typo),
    ("--overwrite on the user's own folder, a good config", overwrite_own_folder),
    ("name: ../../escaped (no --out)", name_escaping_runs("../../escaped")),
    ("name: /tmp/absolute (no --out)", name_escaping_runs("/tmp/absolute")),
    ("YAML alias bomb under data.options", yaml_text(alias_bomb_config())),
    ("duplicate key in the config", yaml_text(yaml.safe_dump(tiny_config()) + "seed: 5\n")),
    ("malformed YAML", yaml_text("teacher: [unclosed\n")),
    ("NaN in a CSV", config_with(csv_with_nan)),
    ("inf in a CSV", config_with(csv_with_inf)),
    ("NaN in an npz", config_with(npz_with_nan)),
    ("CSV test label never seen in training", config_with(csv_test_label_unseen_in_training)),
    ("npz test label never seen in training", config_with(npz_test_label_unseen_in_training)),
    ("an empty class folder", config_with(empty_class_folder)),
    ("teacher checkpoint with a NaN weight", config_with(teacher_checkpoint_with_nan)),
    ("--out under an existing file", out_under_a_file),
    ("`edgedistill report` on a metrics.json missing a key", report_of_incomplete_metrics),
    ("--resume on a finished run", resume_a_finished_run),
]


def hostile(tmp: Path) -> str:
    rows = ["| # | what the user did | exit | traceback | stderr lines | files outside the run folder | message |",
            "|---|---|---|---|---|---|---|"]
    for i, (what, setup) in enumerate(HOSTILE, 1):
        folder = tmp / f"case{i}"
        folder.mkdir()
        argv = setup(folder)
        before, around = files_outside(folder), set(tmp.iterdir()) | set(Path("/tmp").glob("absolute*"))
        proc = subprocess.run([sys.executable, "-m", "edgedistill", *argv], capture_output=True, text=True, env=ENV,
                              timeout=600, cwd=folder)
        after = files_outside(folder, ("run", "runs"))
        before = {k: v for k, v in before.items() if not k.startswith("runs/")}
        same = "unchanged" if after == before else "CHANGED"
        escaped = (set(tmp.iterdir()) | set(Path("/tmp").glob("absolute*"))) - around - {folder, tmp / "done",
                                                                                       tmp / "exp.yaml"}
        same += f"; wrote {sorted(map(str, escaped))}" if escaped else ""
        lines = len([ln for ln in proc.stderr.splitlines() if ln.strip()])
        rows.append(f"| {i} | {what} | {proc.returncode} | {'yes' if 'Traceback' in proc.stderr else 'no'} | "
                    f"{lines} | {same} | {last_line(proc, folder)} |")
    return "\n".join(rows)


@contextlib.contextmanager
def small_disk(where: Path, size: str = "64m"):
    where.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]).returncode:
        raise SystemExit("the disk-full cases mount a tmpfs: run this as root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


def full_disk(tmp: Path) -> str:
    cfg = write(tmp, deployed(tiny_config()))
    moments = [("before the run starts", lambda out: True),
               ("during the teacher's training", lambda out: (out / "logs" / "teacher.jsonl").exists()),
               ("during the scratch student's training", lambda out: (out / "state" / "student_scratch.pt").exists()),
               ("during export", lambda out: (out / "export").exists())]
    rows = ["| disk fills | exit | traceback | stderr lines | metrics.json | message | after freeing: `--resume` |",
            "|---|---|---|---|---|---|---|"]
    for i, (moment, ready) in enumerate(moments):
        with small_disk(tmp / f"disk{i}") as disk:
            out, filler = disk / "run", disk / "filler"
            fill_when(filler, lambda out=out, ready=ready: ready(out)).join(timeout=0 if i else 30)
            proc = cli("run", str(cfg), "--out", str(out), "--quiet")
            kept = (out / "metrics.json").exists()
            lines = len([ln for ln in proc.stderr.splitlines() if ln.strip()])
            filler.unlink(missing_ok=True)
            if out.exists():
                again = cli("run", "--resume", str(out), "--quiet")
                m = json.loads((out / "metrics.json").read_text()) if again.returncode == 0 else {}
                errors = [r for r, rec in m.get("models", {}).items() if "error" in rec.get("deploy", {})]
                then = (f"exit {again.returncode}, metrics.json written, deploy errors: {errors or 'none'}"
                        if again.returncode == 0 else f"exit {again.returncode}: {last_line(again, disk)}")
            else:
                then = "no run folder was left; rerun from scratch"
            rows.append(f"| {moment} | {proc.returncode} | {'yes' if 'Traceback' in proc.stderr else 'no'} | {lines} "
                        f"| {'written' if kept else 'not written'} | {last_line(proc, disk)} | {then} |")
    return ("A real 64 MiB tmpfs holds the run folder; a thread fills it with one file the moment the named file "
            "appears. The tiny deployed mnist1d config of the tests, MCU profile.\n\n" + "\n".join(rows))


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


PARTS = {"bad_inputs": bad_inputs, "hostile": hostile, "full_disk": full_disk, "resume": kill_and_resume, "ddp": ddp,
         "device": reliability_device.table}  # issue 31's cases: benchmarks/reliability_device.py
PARTS["inputs"] = __import__("reliability_inputs").table  # issue 30's cases: benchmarks/reliability_inputs.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="rerun only these tables (default: all)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bodies = {}
        for key in args.parts:
            (tmp / key).mkdir()
            bodies[key] = PARTS[key](tmp / key)
    head = header(time.perf_counter() - t0)
    for key, body in bodies.items():
        replace_section(f"reliability_{key}", f"{head}\n{body}\n", doc=DOC)
        print(body, "\n")


if __name__ == "__main__":
    main()
