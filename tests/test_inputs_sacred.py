"""Inputs are sacred (issue 30), each through the CLI as a user meets it: files a run reads are never deleted,
--resume and export read the data the run started with or stop in one line, images and classes are read as they
are, numbers are range-checked, a full disk is one line naming --resume, and killed writers' leftovers are
cleared."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli, tiny_config, write_digits_folder
from test_cli import assert_one_line_error, write_config
from test_hostile import deployed, tmpfs
from test_reliability import cli_env, kill_when, start


def wine_csv(path: Path, shuffle_labels: bool = False) -> Path:
    """scikit-learn's wine (178 rows, 13 features) as the CSV a user would have."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    y = np.random.default_rng(1).permutation(bunch.target) if shuffle_labels else bunch.target
    rows = [",".join(bunch.feature_names + ["label"])]
    rows += [",".join(f"{v:.6g}" for v in x) + f",{label}" for x, label in zip(bunch.data, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def wine_config(data_path: str, student_epochs: int = 40) -> dict:
    """MLPs on the wine CSV, deterministic, the students long enough to be killed in the middle."""
    cfg = tiny_config("csv", "mlp", "mlp", {"hidden": [32]}, {"hidden": [8]}, path=data_path)
    cfg["deterministic"] = True
    cfg["teacher"]["train"] = {"epochs": 3, "batch_size": 16, "lr": 0.01}
    cfg["student"]["train"] = {"epochs": student_epochs, "batch_size": 16, "lr": 0.01}
    return cfg


def run_files(folder: Path) -> dict[str, bytes]:
    """A folder's files, but the lock file, which says who last held the folder, and the temporary file of a write
    in progress (`.teacher.pt.<random>.tmp`), which a live run renames into place a moment later."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.name == ".edgedistill-lock" or (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        try:
            files[str(p.relative_to(folder))] = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # a folder, or a file the live run replaced meanwhile
            continue
    return files


def scores(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {role: (r["test"]["accuracy"], r["test"]["f1_macro"]) for role, r in m["models"].items()}


# 1. inputs are sacred: --overwrite, --resume, export, ONNX external data, compare, side files

def test_overwrite_keeps_the_inputs_that_live_in_the_old_run(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    (out / "notes.txt").write_text("left by the old run")
    (out / "data").mkdir()
    wine = wine_csv(out / "data" / "wine.csv")
    (out / "devices.yaml").write_text(yaml.safe_dump({"my_board": {
        "description": "my board", "flash_bytes": 2_000_000, "ram_bytes": 512_000, "cores": 1, "dtypes": ["fp32"],
        "weights_in_ram": True}}))
    cfg = wine_config(str(wine), student_epochs=1)
    cfg.update(device="my_board", device_catalog=str(out / "devices.yaml"))
    config = write_config(out, cfg, "my_config.yaml")
    inputs = {p: p.read_bytes() for p in (wine, out / "devices.yaml", config)}

    proc = run_cli("run", str(config), "--out", str(out), "--overwrite", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p: p.read_bytes() for p in inputs} == inputs  # read, and still there
    assert not (out / "notes.txt").exists()  # the old run's own files were replaced
    recorded = json.loads((out / "inputs.json").read_text())["inputs"]
    assert {(e["field"], e["path"]) for e in recorded} == {
        ("config", str(config)), ("data.path", str(wine)), ("device_catalog", str(out / "devices.yaml"))}


def test_overwrite_refuses_an_input_the_run_would_itself_replace(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    before = run_files(out)
    proc = run_cli("run", str(out / "config.yaml"), "--out", str(out), "--overwrite", "--quiet")
    assert_one_line_error(proc, "--overwrite would delete or replace", "config.yaml", "copy it out")
    assert run_files(out) == before


def killed_wine_run(tmp_path: Path) -> tuple[Path, Path]:
    """A wine run started from tmp/a with a relative data.path, killed while the scratch student trains."""
    a = tmp_path / "a"
    a.mkdir()
    wine_csv(a / "wine.csv")
    write_config(a, wine_config("wine.csv"))
    killed = tmp_path / "killed"
    proc = start("run", "exp.yaml", "--out", str(killed), "--quiet", cwd=a)
    kill_when(proc, lambda: (killed / "state" / "student_scratch.pt").exists())
    assert not (killed / "metrics.json").exists()
    return a, killed


def test_a_run_resumed_from_another_folder_finishes_on_the_data_it_started_with(tmp_path):
    a, killed = killed_wine_run(tmp_path)
    whole = tmp_path / "whole"
    assert run_cli("run", "exp.yaml", "--out", str(whole), "--quiet", cwd=a).returncode == 0
    b = tmp_path / "b"  # another folder holding another wine.csv: same name, shuffled labels
    b.mkdir()
    wine_csv(b / "wine.csv", shuffle_labels=True)
    resumed = run_cli("run", "--resume", str(killed), "--quiet", cwd=b)
    assert resumed.returncode == 0, resumed.stderr
    assert scores(killed) == scores(whole)
    assert json.loads((killed / "metrics.json").read_text())["config"]["data"]["path"] == str(a / "wine.csv")


def test_resume_and_export_stop_in_one_line_when_the_data_changed(tmp_path):
    a, killed = killed_wine_run(tmp_path)
    recorded = (killed / "inputs.json").read_text()
    (killed / "inputs.json").write_text(recorded.replace('"kind": "file"', '"kind": "link"', 1))  # edited by hand
    assert_one_line_error(run_cli("run", "--resume", str(killed), "--quiet"), f"--resume {killed}",
                          f"{killed / 'inputs.json'} is unreadable", "inputs.0", "start a new run")
    (killed / "inputs.json").write_text(recorded)
    wine_csv(a / "wine.csv", shuffle_labels=True)
    assert_one_line_error(run_cli("run", "--resume", str(killed), "--quiet"), f"--resume {killed}", "data.path",
                          str(a / "wine.csv"), "changed")
    assert not (killed / "metrics.json").exists()

    wine_csv(a / "wine.csv")
    os.utime(a / "wine.csv")  # the same bytes, touched: not a change
    assert run_cli("run", "--resume", str(killed), "--quiet").returncode == 0
    (a / "wine.csv").write_text((a / "wine.csv").read_text().replace(",0\n", ",1\n", 3))
    before = (killed / "metrics.json").read_bytes()
    assert_one_line_error(run_cli("export", str(killed), "--format", "onnxruntime-fp32"), f"export {killed}",
                          "data.path", "changed")
    assert (killed / "metrics.json").read_bytes() == before
    (killed / "inputs.json").write_text("[]")
    assert_one_line_error(run_cli("export", str(killed), "--format", "onnxruntime-fp32"), f"export {killed}",
                          "inputs.json is unreadable")
    assert (killed / "metrics.json").read_bytes() == before


def onnx_with_external_data(path: Path, seed: int) -> Path:
    import torch
    import torch.nn as nn

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    torch.onnx.export(model, (torch.zeros(2, 1, 40),), str(path), dynamo=True, external_data=True, verbose=False,
                      input_names=["input"], output_names=["out"], dynamic_shapes=({0: torch.export.Dim("b")},))
    assert (path.parent / f"{path.name}.data").is_file()
    return path


def test_onnx_teacher_with_external_data_serves_every_seed_and_a_changed_weight_file_stops_resume(tmp_path):
    teacher = onnx_with_external_data(tmp_path / "t" / "teacher.onnx", 0)
    other = onnx_with_external_data(tmp_path / "u" / "teacher.onnx", 1)
    cfg = tiny_config()
    cfg["teacher"] = {"model": "onnx", "args": {"path": str(teacher)}}
    config = write_config(tmp_path, cfg)
    seeds = tmp_path / "seeds"
    proc = run_cli("run", str(config), "--out", str(seeds), "--seeds", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    first = seeds / "seed_0"
    assert (first / "teacher.onnx.data").read_bytes() == (teacher.parent / "teacher.onnx.data").read_bytes()
    m0, m1 = (json.loads((seeds / s / "metrics.json").read_text()) for s in ("seed_0", "seed_1"))
    assert m0["models"]["teacher"]["onnx"]["file_sha256"] == m1["models"]["teacher"]["onnx"]["file_sha256"]

    cfg["distill"]["cache"] = {"enabled": True, "views": 2}
    cfg["student"]["train"]["epochs"] = 30
    killed = tmp_path / "killed"
    proc = start("run", str(write_config(tmp_path, cfg, "cached.yaml")), "--out", str(killed), "--quiet")
    kill_when(proc, lambda: (killed / "state" / "student_scratch.pt").exists())
    shutil.copyfile(other.parent / "teacher.onnx.data", teacher.parent / "teacher.onnx.data")  # new weights
    assert_one_line_error(run_cli("run", "--resume", str(killed), "--quiet"),
                          "teacher.args.path (external data)", "teacher.onnx.data", "changed")


def test_compare_writes_only_into_a_folder_it_made(deployed_run, tmp_path):
    run_dir, _ = deployed_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my own report")
    assert_one_line_error(run_cli("compare", str(run_dir), str(run_dir), "--out", str(mine)),
                          "did not write", "choose a new or empty folder")
    assert (mine / "report.html").read_text() == "my own report"
    fresh = tmp_path / "cmp"
    for _ in range(2):  # made by compare, then replaced by the next compare
        proc = run_cli("compare", str(run_dir), str(run_dir), "--out", str(fresh))
        assert proc.returncode == 0, proc.stderr
    assert (fresh / "compare.md").is_file()


def test_onnx_runtime_writes_nothing_in_the_users_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = write_config(tmp_path, deployed(tiny_config(), device="host"))
    env = {k: v for k, v in cli_env().items()  # as on a user's machine, where ONNX Runtime's telemetry is on
           if k not in ("CI", "ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    proc = subprocess.run([sys.executable, "-m", "edgedistill", "run", str(cfg), "--out", str(tmp_path / "run"),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".cache" / "Microsoft").exists(), sorted(map(str, home.rglob("*")))


# 3. data read as it is

def png16(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"


def test_sixteen_bit_pngs_keep_their_range(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for cls, (lo, hi) in (("dim", (300, 20000)), ("bright", (30000, 65535))):
        for i in range(12):
            px = rng.integers(lo, hi, (8, 8))
            png16(tmp_path / "imgs" / cls / f"{i}.png", px)
            written[f"{cls}/{i}.png"] = px
    cfg = tiny_config("image_folder", "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]}, path=str(tmp_path / "imgs"))
    cfg["data"].update(limit_train=None, limit_test=None)
    cache = tmp_path / "cache"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "run"), "--quiet",
                   env_extra={"EDGEDISTILL_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    (meta_file,) = cache.glob("packs/*/*/meta.json")
    meta = json.loads(meta_file.read_text())
    assert meta["dtype"] == "uint16"
    rows = np.fromfile(meta_file.parent / "images.u8", dtype=np.uint16).reshape(meta["shape"])
    stored = {tuple(r.ravel()) for r in rows}
    assert stored == {tuple(px.ravel()) for px in written.values()}  # every pixel as it is, none clipped


def test_a_class_folder_linked_to_another_is_refused_naming_both(tmp_path):
    root = write_digits_folder(tmp_path / "digits")
    (root / "nine").symlink_to(root / "9", target_is_directory=True)
    cfg = tiny_config("image_folder", "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]}, path=str(root))
    out = tmp_path / "run"
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out)),
                          "class folders '9' and 'nine' hold the same file")
    assert not out.exists()


def test_a_class_left_without_training_rows_is_refused_naming_it(tmp_path):
    cfg = tiny_config("digits", "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]})
    cfg["data"]["limit_train"] = 10
    out = tmp_path / "run"
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out)),
                          "has no training rows after data.limit_train: 10", "class '")
    assert not out.exists()


# 4. every numeric input range-checked; a full disk; killed writers' leftovers

@pytest.mark.parametrize("override,fragment", [
    ("seed=-1", "'seed'"), ("seed=4294967296", "'seed'"), ("seed=1180591620717411303424", "'seed'"),
    ("data.split_seed=-5", "'data.split_seed'"), ("distill.cache.views=1099511627776", "'distill.cache.views'"),
    ("student.train.lr=.inf", "'student.train.lr'"), ("deploy.latency_runs=1099511627776", "latency_runs"),
])
def test_numbers_out_of_range_are_one_line(tmp_path, override, fragment):
    out = tmp_path / "run"
    assert_one_line_error(run_cli("run", "--set", override, "--out", str(out)), fragment)
    assert not out.exists()


def test_seeds_beyond_what_numpy_accepts_are_one_line(tmp_path):
    out = tmp_path / "s"
    for args, fragment in ((["--set", "seed=4294967295", "--seeds", "2"], "pass 4294967295"),
                           (["--seeds", "1180591620717411303424"], "at most 1000")):
        assert_one_line_error(run_cli("run", *args, "--out", str(out)), fragment)
        assert not out.exists()


def test_a_disk_full_inside_torch_save_names_resume_and_resume_finishes(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    with tmpfs(tmp_path / "disk", "3m") as disk:  # the config and logs fit; the teacher's training state does not
        out = disk / "run"
        proc = run_cli("run", str(cfg), "--out", str(out), "--quiet")
        assert_one_line_error(proc, f"cannot use {out}", "No space left on device",
                              f"edgedistill run --resume {out}")  # the file that did not fit is named
        assert "internal error" not in proc.stderr
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        resumed = run_cli("run", "--resume", str(out), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        assert (out / "metrics.json").is_file()


def test_a_killed_packers_temporary_pack_is_removed_by_the_next_run(tmp_path):
    root = write_digits_folder(tmp_path / "digits")
    cfg = write_config(tmp_path, tiny_config("image_folder", "mlp", "mlp", {"hidden": [16]}, {"hidden": [8]},
                                             path=str(root)))
    cache = tmp_path / "cache"

    def temporary_packs() -> list[Path]:
        return list(cache.glob("packs/*/.*.tmp-*"))

    env = {**cli_env(), "EDGEDISTILL_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "run", str(cfg), "--out", str(tmp_path / "a")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when(proc, lambda: bool(temporary_packs()))
    assert temporary_packs(), "the kill left no temporary pack to clean"
    time.sleep(2.5)  # older than a packer takes to lock its folder
    proc = run_cli("run", str(cfg), "--out", str(tmp_path / "b"), "--quiet", env_extra={"EDGEDISTILL_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert not temporary_packs()


def test_a_teacher_cache_killed_while_building_leaves_nothing_in_the_finished_run(tmp_path):
    cfg = tiny_config(augment={"crop_padding": 2})
    cfg["data"].update(limit_train=2000)
    cfg["distill"]["cache"] = {"enabled": True, "views": 16}
    config = write_config(tmp_path, cfg)
    out = tmp_path / "run"
    proc = start("run", str(config), "--out", str(out), "--quiet")
    kill_when(proc, lambda: bool(list((out / "cache").glob(".teacher_outputs.tmp-*"))))
    resumed = run_cli("run", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_a_touched_input_is_unchanged_but_new_bytes_or_a_new_image_are_a_change(tmp_path):
    from edgedistill.pipeline.inputs import Input, change, record_inputs

    def recorded(path: Path):
        return record_inputs([Input("data.path", path, "data")]).inputs[0]

    f = wine_csv(tmp_path / "wine.csv")
    entry = recorded(f)
    os.utime(f, ns=(10**18, 10**18))
    assert change(entry) is None
    f.write_text(f.read_text().replace(",0\n", ",2\n", 1))
    assert "changed" in change(entry)
    f.unlink()
    assert change(entry) == "is gone"

    root = write_digits_folder(tmp_path / "digits")
    entry = recorded(root)
    (root / "0" / ".DS_Store").write_text("hidden: not data")
    assert change(entry) is None
    shutil.copy(root / "0" / "0.png", root / "1" / "copy.png")
    assert "1797 files" in change(entry) and "1798" in change(entry)


def test_a_live_packers_temporary_pack_is_left_alone_and_a_dead_ones_removed(tmp_path):
    from edgedistill.data.packing import remove_dead_packers
    from edgedistill.runlock import hold, let_go

    live, dead, young = (tmp_path / f".{n}.tmp-x" for n in ("live", "dead", "young"))
    for folder in (live, dead, young):
        (folder / "images.u8").parent.mkdir()
        (folder / "images.u8").write_bytes(b"half a pack")
    for folder in (live, dead):
        os.utime(folder, (time.time() - 60, time.time() - 60))
    owner = hold(live)  # another packer at work: its lock is held
    try:
        assert remove_dead_packers(tmp_path) == [dead]
    finally:
        let_go(owner)
    assert live.is_dir() and young.is_dir() and not dead.exists()
