"""What a hostile new user found (issue 16), each through the CLI as they met it: stderr, exit codes, files on disk."""
from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config

TINY_DEVICE = {"tiny_mcu": {"description": "a board far too small for any student", "flash_bytes": 4096,
                            "ram_bytes": 512, "cores": 1, "dtypes": ["int8"], "weights_in_ram": False,
                            "macs_per_second": {"int8": 1.0e7}, "macs_source": "test figure"}}


def deployed(cfg: dict, device: str = "mcu") -> dict:
    # ONNX Runtime's formats: these cases are about the pipeline's care, and it is the quickest runtime
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 16,
                     "formats": ["onnxruntime-fp32", "onnxruntime-int8"]}
    cfg["device"] = device
    return cfg


def user_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False):
    """A real small (or read-only) filesystem; the test is skipped where this process may not mount one."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_when(filler: Path, ready) -> threading.Thread:
    """Fill the disk under `filler` with one file, in a thread, the moment `ready()` holds."""

    def fill() -> None:
        deadline = time.monotonic() + 300
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            while True:
                fh.write(b"\0" * (1 << 20))

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    return thread


# 1. warnings after the first int8 quantization
def test_fit_warning_after_quantization_reaches_stderr(tmp_path):
    catalog = tmp_path / "devices.yaml"
    catalog.write_text(yaml.safe_dump(TINY_DEVICE))
    cfg = deployed(tiny_config(), "tiny_mcu")
    cfg["device_catalog"] = str(catalog)
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "edgedistill: warning: student 'convnet' as int8 on device 'tiny_mcu' does not fit: " in proc.stderr


def test_run_leaves_the_root_logger_and_the_callers_loggers_alone(tmp_path, caplog):
    import edgedistill

    root = logging.getLogger()
    before = root.level
    mine = logging.getLogger("a_callers_own_logger")
    edgedistill.run(deployed(tiny_config()), out_dir=tmp_path / "r", progress=False)
    assert root.level == before
    with caplog.at_level(logging.WARNING, logger="a_callers_own_logger"):
        mine.warning("still heard")
    assert "still heard" in caplog.text


# 2. and 3. --overwrite
def test_overwrite_never_touches_a_folder_that_is_not_a_run(tmp_path):
    own = tmp_path / "my_project"
    (own / "notes").mkdir(parents=True)
    (own / "notes" / "plan.txt").write_text("months of work")
    (own / "data.csv").write_text("a,label\n1,0\n")
    before = user_files(own)
    typo = tiny_config()
    typo["data"].update(name="csv", path=str(tmp_path / "dta.csv"))
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, typo)), "--out", str(own), "--overwrite"),
                          "does not exist")
    assert user_files(own) == before
    good = write_config(tmp_path, tiny_config(), "good.yaml")
    assert_one_line_error(run_cli("run", str(good), "--out", str(own), "--overwrite"), "not an edgedistill run")
    assert user_files(own) == before


def test_overwrite_keeps_the_teacher_checkpoint_it_reuses_and_replaces_a_run(tmp_path):
    out = tmp_path / "r"
    first = write_config(tmp_path, tiny_config())
    assert run_cli("run", str(first), "--out", str(out), "--quiet").returncode == 0
    (out / "extra_from_last_run.txt").write_text("x")
    teacher_bytes = (out / "teacher.pt").read_bytes()
    cfg = tiny_config()
    cfg["teacher"]["checkpoint"] = str(out / "teacher.pt")
    proc = run_cli("run", str(write_config(tmp_path, cfg, "reuse.yaml")), "--out", str(out), "--overwrite", "--quiet")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["models"]["teacher"]["source"].startswith("loaded:")
    assert not (out / "extra_from_last_run.txt").exists()  # the old run was replaced ...
    assert (out / "teacher.pt").read_bytes()[:64] == teacher_bytes[:64]  # ... but not the teacher it reused


# 4. NaN and inf in the user's data
def test_nan_and_inf_are_refused_at_load_naming_file_column_and_row(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)) + "1,nan,0\n")
    cfg = tiny_config()
    cfg["data"] = {"name": "csv", "path": str(csv)}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r1")),
                          "t.csv: column 'b' holds nan at line 32")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    x[7, 2] = np.inf
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(40) % 2, x_test=x[:4] * 0, y_test=np.arange(4) % 2)
    cfg["data"] = {"name": "npz", "path": str(tmp_path / "d.npz")}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r2")),
                          "d.npz: array 'x_train' holds inf at row 7")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # nothing made for a failed start


# 5. phantom classes
def _images(root: Path, classes: list[str], n: int = 6) -> None:
    from PIL import Image

    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8), 30 * c + 5 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_no_phantom_classes(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("a,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(30)))
    test.write_text("a,label\n1,a\n2,b\n3,c\n")
    cfg = tiny_config()
    cfg["data"] = {"name": "csv", "path": str(train), "options": {"test_path": str(test)}}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r1")),
                          "test labels ['c'] never occur in the training split")
    np.savez(tmp_path / "d.npz", x_train=np.zeros((40, 3)), y_train=np.arange(40) % 2, x_test=np.zeros((3, 3)),
             y_test=np.array([0, 1, 5]))
    cfg["data"] = {"name": "npz", "path": str(tmp_path / "d.npz")}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r2")),
                          "test labels ['5'] never occur")
    imgs = tmp_path / "imgs"
    _images(imgs, ["cat", "dog"])
    (imgs / "empty_class").mkdir()
    cfg["data"] = {"name": "image_folder", "path": str(imgs)}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r3")),
                          "empty_class: class folder holds no images")
    (imgs / "empty_class").rmdir()
    _images(imgs / ".ipynb_checkpoints", ["cat"], 2)  # hidden: never a class
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r4"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r4" / "metrics.json").read_text())["dataset"]["class_names"] == ["cat", "dog"]


def test_one_hot_npz_labels_and_a_bom_csv_load(tmp_path):
    y = np.eye(2, dtype=np.float32)[np.arange(40) % 2]
    np.savez(tmp_path / "d.npz", x_train=np.random.default_rng(0).normal(size=(40, 3)), y_train=y,
             x_test=np.zeros((4, 3)), y_test=y[:4])
    csv = tmp_path / "excel.csv"
    csv.write_bytes("label,a\n".encode("utf-8-sig") + "".join(f"{i % 2},{i}\n" for i in range(30)).encode())
    from edgedistill.data import load_dataset

    d = load_dataset("npz", path=str(tmp_path / "d.npz"))
    assert d.class_names == ["0", "1"] and set(d.y_test) == {0, 1}
    assert load_dataset("csv", path=str(csv)).class_names == ["0", "1"]


# 6. one line, exit 2, where a traceback used to be
def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid small PNG whose header claims another size: Pillow judges a decompression bomb by the header."""
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(raw))


def csv_path_is_a_folder(c, tmp):
    c["data"] = {"name": "csv", "path": str(tmp)}


def image_folder_path_is_a_file(c, tmp):
    (tmp / "one.png").write_bytes(b"x")
    c["data"] = {"name": "image_folder", "path": str(tmp / "one.png")}


def latin1_csv(c, tmp):
    (tmp / "t.csv").write_bytes("caf\xe9,label\n".encode("latin-1") + b"".join(b"%d,%d\n" % (i, i % 2)
                                                                                for i in range(20)))
    c["data"] = {"name": "csv", "path": str(tmp / "t.csv")}


def image_size_zero(c, tmp):
    _images(tmp / "imgs", ["a", "b"])
    c["data"] = {"name": "image_folder", "path": str(tmp / "imgs"), "options": {"size": [0, 0]}}


def decompression_bomb(c, tmp):
    _images(tmp / "imgs", ["a", "b"])
    _png_claiming(tmp / "imgs" / "a" / "huge.png", 20000, 20000)
    c["data"] = {"name": "image_folder", "path": str(tmp / "imgs")}


def model_returns_a_tuple(c, tmp):
    c["student"].update(model="user_models:returns_tuple", args={})


def teacher_with_aux_logits_in_training(c, tmp):
    c["teacher"].update(model="user_models:aux_logits_in_training", args={})


def student_that_squeezes_a_batch_of_one(c, tmp):
    c["student"].update(model="user_models:squeezes_its_output", args={})


def student_in_half_precision(c, tmp):
    c["student"].update(model="user_models:half_weights", args={})


def model_without_parameters(c, tmp):
    c["student"].update(model="user_models:no_parameters", args={})


def checkpoint_with_code(c, tmp):
    import os

    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": Payload()}, tmp / "evil.pt")
    c["teacher"]["checkpoint"] = str(tmp / "evil.pt")


def color_jitter_on_a_sequence(c, tmp):
    c["data"]["augment"] = {"color_jitter": 0.3}  # mnist1d: (1, 40) sequences


def pack_dir_that_is_a_file(c, tmp):
    _images(tmp / "imgs", ["a", "b"])
    (tmp / "packs").write_text("x")
    c["data"] = {"name": "image_folder", "path": str(tmp / "imgs"), "options": {"pack_dir": str(tmp / "packs")}}


HOSTILE_FILES = [
    (color_jitter_on_a_sequence, "data.augment.color_jitter: works on images (C, H, W)"),
    (pack_dir_that_is_a_file, "data.options.pack_dir: cannot write the image pack in"),
    (csv_path_is_a_folder, "is a folder, but dataset 'csv' reads a CSV file"),
    (image_folder_path_is_a_file, "is a file, but dataset 'image_folder' reads a folder"),
    (latin1_csv, "is not UTF-8 text (byte 0xe9"),
    (image_size_zero, "data.options.size: [0, 0] must be [height, width]"),
    (decompression_bomb, "huge.png: too large to decode safely"),
    (model_returns_a_tuple, "student.model: forward returns tuple, not a tensor of logits"),
    (model_without_parameters, "student.model: has no trainable parameters"),
    (student_in_half_precision, "student.model: its weights are float16, but models are built in float32"),
    (teacher_with_aux_logits_in_training, "teacher.model: forward returns tuple in training mode, not a tensor"),
    (student_that_squeezes_a_batch_of_one,
     "student.model: forward returns shape (10,) on a batch of 1 sample, not (1, 10)"),
    (checkpoint_with_code, "holds pickled code or objects (posix.system)"),
]


@pytest.mark.parametrize("make,fragment", HOSTILE_FILES, ids=[f.__name__ for f, _ in HOSTILE_FILES])
def test_hostile_input_is_one_line_exit_2(tmp_path, make, fragment):
    cfg = tiny_config()
    make(cfg, tmp_path)
    proc = run_cli("run", str(write_config(tmp_path, cfg, "exp.yaml")), "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(proc, fragment)
    assert "weights_only=False" not in proc.stderr and "weights_only` set to `False" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_out_that_cannot_be_written_is_one_line(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    (tmp_path / "a_file").write_text("x")
    assert_one_line_error(run_cli("run", str(cfg), "--out", str(tmp_path / "a_file" / "run")), "Not a directory")
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        assert_one_line_error(run_cli("run", str(cfg), "--out", str(ro / "run")), "Read-only file system",
                              "choose a writable place")


# 7. a full disk
def test_full_disk_during_export_leaves_a_resumable_run(tmp_path):
    cfg = write_config(tmp_path, deployed(tiny_config()))
    with tmpfs(tmp_path / "disk", "64m") as disk:
        out, filler = disk / "run", disk / "filler"

        watcher = fill_when(filler, lambda: (out / "export").exists())
        proc = run_cli("run", str(cfg), "--out", str(out), "--quiet")
        watcher.join(timeout=5)
        assert filler.exists(), "the disk was never filled"
        assert_one_line_error(proc, "No space left on device", "free some space", f"--resume {out}")
        assert not (out / "metrics.json").exists() and (out / "state").is_dir()
        filler.unlink()
        resumed = run_cli("run", "--resume", str(out), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        m = json.loads((out / "metrics.json").read_text())
        assert all("error" not in r["deploy"] for r in m["models"].values())
        assert (out / "report.html").is_file() and not (out / "state").exists()


def test_failed_export_is_one_warning_and_its_dump_goes_to_the_log(tmp_path):
    cfg = deployed(tiny_config())
    cfg["student"].update(model="user_models:unexportable", args={})
    cfg["deploy"]["required"] = False  # train anyway: the deploy stage's failure is what this test is about
    out = tmp_path / "r"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr + proc.stdout
    warned = [ln for ln in proc.stderr.splitlines() if "deployment of student_kd failed" in ln]
    assert len(warned) == 1 and "libraries.log" in warned[0]
    assert len(proc.stderr.strip().splitlines()) <= 5, proc.stderr  # not the exporter's 60-line graph dump
    m = json.loads((out / "metrics.json").read_text())
    assert "aten.kthvalue" in m["models"]["student_kd"]["deploy"]["error"]  # the operator, not the step that failed
    assert "\x1b[" not in (out / "report.md").read_text() + (out / "report.html").read_text()
    assert "Translate the graph into ONNX" in (out / "logs" / "libraries.log").read_text()


# 8. a run name is a label
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute"])
def test_run_name_cannot_leave_runs_folder(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli("run", str(write_config(tmp_path, tiny_config())), "--set", f"name={name}", cwd=work)
    assert_one_line_error(proc, "key 'name'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "work"] and not any(work.iterdir())


# 9. YAML that expands past memory, and duplicate keys
ALIAS_BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def alias_bomb_config() -> str:
    """The tiny config with the bomb under data.options, where the loader would expand it (as the user found)."""
    rest = yaml.safe_dump({k: v for k, v in tiny_config().items() if k != "data"})
    return rest + "data:\n  name: mnist1d\n  options:\n" + "".join(f"    {ln}\n" for ln in ALIAS_BOMB.splitlines())


def test_yaml_alias_bomb_and_duplicate_keys_are_refused(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb_config())
    assert_one_line_error(run_cli("run", str(bomb)), "alias *a is not allowed")
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump(tiny_config()) + "seed: 5\n")
    assert_one_line_error(run_cli("run", str(dup)), "duplicate key 'seed'", "line")


# 10. report on an incomplete metrics.json
def test_report_names_a_missing_key(tmp_path):
    out = tmp_path / "r"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    m = json.loads((out / "metrics.json").read_text())
    del m["models"]["student_kd"]["test"]["f1_macro"]
    (out / "metrics.json").write_text(json.dumps(m))
    assert_one_line_error(run_cli("report", str(out)), "missing key 'models.student_kd.test.f1_macro'")


def test_every_missing_key_of_a_deployed_metrics_json_is_named_or_not_needed(tmp_path, deployed_run):
    """Remove each key of a real file in turn: the schema names it, or the reports build without it. The keys the
    schema lets go are then all removed at once (keeping or dropping the optional sections), and the reports must
    still build from what is left."""
    import copy

    from edgedistill.errors import UserError
    from edgedistill.metrics import check_metrics
    from edgedistill.report import rebuild_reports

    _, metrics = deployed_run
    opaque = {"config", "history", "per_class", "confusion_matrix", "budget", "class_names", "input_shape", "args",
              "overflows", "distill"}

    def paths(node, prefix=()):
        for key, value in node.items() if isinstance(node, dict) else ():
            yield prefix + (key,)
            if key not in opaque:
                yield from paths(value, prefix + (key,))

    def without(m: dict, path: tuple) -> dict | None:
        broken, parent = copy.deepcopy(m), None
        parent = broken
        for key in path[:-1]:
            if key not in parent:
                return None
            parent = parent[key]
        if path[-1] not in parent:
            return None
        del parent[path[-1]]
        return broken

    optional = []
    for path in paths(metrics):
        try:
            check_metrics(without(metrics, path), "metrics.json")
            optional.append(path)
        except UserError as err:
            assert "metrics.json: " in str(err) and "'" in str(err)
    assert optional and len(optional) < len(list(paths(metrics)))
    sections = {"deploy", "early_fit_check", "train", "val", "student_search"}
    for keep_sections in (True, False):
        smallest = metrics
        for path in optional:
            if keep_sections and path[-1] in sections:
                continue
            smallest = without(smallest, path) or smallest
        check_metrics(smallest, "metrics.json")
        (tmp_path / "metrics.json").write_text(json.dumps(smallest))
        assert rebuild_reports(tmp_path).is_file()


def test_nonfinite_teacher_checkpoint_is_refused_before_any_training(tmp_path):
    import torch

    out = tmp_path / "r"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    ckpt = torch.load(out / "teacher.pt", weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(ckpt, tmp_path / "nan_teacher.pt")
    cfg = tiny_config()
    cfg["teacher"]["checkpoint"] = str(tmp_path / "nan_teacher.pt")
    proc = run_cli("run", str(write_config(tmp_path, cfg, "nan.yaml")), "--out", str(tmp_path / "r2"))
    assert_one_line_error(proc, "holds NaN or inf in", "cannot teach")
    assert not (tmp_path / "r2").exists()


def test_macro_scores_average_over_the_classes_the_test_split_holds():
    from edgedistill.models.evaluate import classification_metrics

    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), ["a", "b", "c"])
    assert m["recall_macro"] == 1.0 and m["f1_macro"] == 1.0  # not 2/3, as counting 'c' as 0 would give
    assert m["absent_classes"] == ["c"] and m["per_class"]["c"]["support"] == 0


# a model that edits its input in place
def rescored(out: Path, role: str, side: str) -> tuple[float, float]:
    """The role's checkpoint scored again here, on clean test and validation splits: (test, val) accuracy."""
    import torch

    from edgedistill.checkpoint import load_weights, read_checkpoint
    from edgedistill.config import resolve_config
    from edgedistill.models.build import build_model
    from edgedistill.pipeline.prepare import load_data

    cfg = resolve_config(out / "config.yaml")
    data = load_data(cfg)
    model = build_model(getattr(cfg, side), side, data, 0)
    load_weights(model, read_checkpoint(out / f"{role}.pt"), role)
    with torch.no_grad():
        scores = [(model.eval()(torch.tensor(x)).argmax(1).numpy() == y).mean()
                  for x, y in ((data.x_test, data.y_test), (data.x_val, data.y_val))]
    return float(scores[0]), float(scores[1])


def test_a_model_that_edits_its_input_in_place_is_scored_on_clean_data(tmp_path):
    """Each model gets its own copy of a batch: evaluation, validation and the export checks handed the stored
    splits to the model as they were, so x.mul_() rescaled them for every model scored after."""
    cfg = deployed(tiny_config(teacher="user_models:edits_its_input", student="user_models:edits_its_input"),
                   device="host")
    cfg["deploy"]["formats"] = ["onnxruntime-fp32"]
    for side in ("teacher", "student"):
        cfg[side]["train"]["epochs"] = 2
    out = tmp_path / "r"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    models = json.loads((out / "metrics.json").read_text())["models"]
    for role, side in (("teacher", "teacher"), ("student_scratch", "student"), ("student_kd", "student")):
        test, val = rescored(out, role, side)
        assert models[role]["test"]["accuracy"] == pytest.approx(test), role
        assert models[role]["deploy"]["val_accuracy_torch"] == pytest.approx(val), role


def test_a_teacher_that_edits_its_input_leaves_the_students_batch_and_the_training_rows_alone(tmp_path):
    """The live teacher and the teacher cache's build run the teacher on a copy: the student reads the same batch
    next, and with no augmentation the cache's batch is the stored training rows themselves."""
    import torch

    from edgedistill.config import AugmentConfig
    from edgedistill.train.cache import build_cache
    from edgedistill.train.trainer import LiveTeacher
    from user_models import edits_its_input

    teacher, plain = edits_its_input((1, 6), 3), AugmentConfig(crop_padding=0, hflip=False)
    x = np.random.default_rng(0).normal(size=(5, 1, 6)).astype(np.float32)
    clean = x.copy()
    rows = torch.tensor(x)
    xb, logits, _ = LiveTeacher(teacher, plain).batch(rows, torch.arange(5), torch.Generator(), torch.device("cpu"))
    assert torch.equal(xb, torch.tensor(clean)) and logits is not None
    (tmp_path / "bank").mkdir()
    build_cache(teacher, x, plain, 1, 0, [], torch.device("cpu"), None, tmp_path / "bank")
    assert np.array_equal(x, clean)


def test_a_teacher_scoring_with_a_conv_head_is_pruned_with_its_head_whole(tmp_path):
    """The class scores of a 1x1-conv head before a global pool (no Linear) were pruned like any channel, and the
    dry run blamed the tool ('report this as a bug'); the head is now left whole, as a Linear one is."""
    cfg = tiny_config(teacher="user_models:conv_head")
    cfg["compress"] = {"prune": {"enabled": True, "target_params": 2000, "epochs": 1}}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    pruned = json.loads((tmp_path / "r" / "metrics.json").read_text())["models"]["teacher_pruned"]
    assert pruned["pruning"]["params_after"] <= 2000 < pruned["pruning"]["params_before"]
