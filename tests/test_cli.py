"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors without tracebacks."""
import json

import pytest
import yaml

from conftest import run_cli, tiny_config


def write_config(tmp_path, cfg: dict, name: str = "exp.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(cfg))
    return f


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_run_prints_table_and_writes_run_folder(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    out = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(out), "--quiet", "--set", "seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "| student (KD) |" in proc.stdout and "KD gain over scratch" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 3


def test_seeds_hand_over_the_first_seeds_file_and_export_only_it(tmp_path):
    """make demo's shape: --seeds with deploy.every_seed false exports the first seed's KD student alone, and the
    summary ends with that file, its fit and its accuracy through the runtime."""
    cfg = tiny_config()
    cfg["deploy"] = {"enabled": True, "roles": ["student_kd"], "every_seed": False, "formats": ["onnxruntime-fp32"],
                     "latency_runs": 5, "calibration_samples": 32, "qat": "off"}
    out = tmp_path / "s"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet", "--seeds", "2")
    assert proc.returncode == 0, proc.stderr
    assert "paired by seed" in proc.stdout
    assert f"{out / 'seed_0'}: deliverable: export/student_kd_fp32.onnx" in proc.stdout, proc.stdout
    assert (out / "seed_0" / "export" / "student_kd_fp32.onnx").exists()
    assert not (out / "seed_1" / "export").exists()
    second = json.loads((out / "seed_1" / "metrics.json").read_text())
    assert second["config"]["deploy"]["enabled"] is False and "deploy" not in second["models"]["student_kd"]


def test_seeds_overwrite_refuses_to_delete_the_teacher_it_would_read(tmp_path):
    """Rerunning --seeds over its own folder with the first seed's teacher: --overwrite would delete that file
    before any seed read it, so the run stops with one line and the file stays."""
    cfg = write_config(tmp_path, tiny_config())
    out = tmp_path / "s"
    assert run_cli("run", str(cfg), "--out", str(out), "--quiet", "--seeds", "2").returncode == 0
    teacher = out / "seed_0" / "teacher.pt"
    proc = run_cli("run", str(cfg), "--out", str(out), "--quiet", "--seeds", "2", "--overwrite",
                   "--set", f"teacher.checkpoint={teacher}")
    assert_one_line_error(proc, "--overwrite would delete", "teacher.pt")
    assert teacher.is_file() and (out / "seeds.json").is_file()


def test_jsonl_progress_is_one_json_object_per_line(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    proc = run_cli("run", str(cfg), "--out", str(tmp_path / "run"), "--jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert {e["role"] for e in epochs} == {"teacher", "student_scratch", "student_kd"}
    assert all("val_accuracy" in e for e in epochs)
    assert events[-1]["event"] == "finished" and "kd_gain_over_scratch" in events[-1]["comparison"]
    assert "train teacher" not in proc.stderr  # no bars in this mode


def test_listings():
    ds = run_cli("datasets")
    assert ds.returncode == 0 and "fashion_mnist" in ds.stdout and "mnist1d" in ds.stdout
    models = run_cli("models")
    assert models.returncode == 0 and "transformer" in models.stdout and "lightweight" in models.stdout


BAD = [
    (lambda c: c["teacher"].update(trian={}), "unknown key 'teacher.trian'"),
    (lambda c: c["student"]["train"].update(epochs="ten"), "key 'student.train.epochs'"),
    (lambda c: c["data"].update(name="fashion_mnist", path="/nonexistent/fm"), "apt-get install dataset-fashion-mnist"),
    (lambda c: c["data"].update(name="npz", path="/nonexistent/d.npz"), "data.path: '/nonexistent/d.npz' does not exist"),
    (lambda c: c["teacher"].update(model="user_models:five_class_model"), "10 classes"),
    (lambda c: c["student"].update(model="user_models:five_class_model"), "10 classes"),
    (lambda c: c["teacher"].update(checkpoint="/nonexistent/t.pt"), "teacher.checkpoint: file"),
    (lambda c: c["distill"].update(temperature=0), "key 'distill.temperature'"),
    (lambda c: c["teacher"].update(model="resnet_9000"), "unknown model 'resnet_9000'"),
    (lambda c: c["student"].update(model="mlp", args={"hidden": [-1]}), "student.args"),
    (lambda c: c["student"].update(args={"channels": "wide"}), "student.args"),
    (lambda c: c["data"].update(name="csv", path="/nonexistent/t.csv"), "does not exist"),
    (lambda c: c.update(device="toaster"), "unknown device 'toaster'"),
    (lambda c: c.update(device_catalog="/nonexistent/devices.yaml"), "device_catalog"),
    (lambda c: c.update(compress={"prune": {"enabled": True}}), "target_params or target_macs"),
    (lambda c: c["data"].update(val_fraction=0.9), "key 'data.val_fraction'"),
    (lambda c: c["teacher"]["train"].update(optimizer="adam"), "key 'teacher.train.optimizer'"),
    (lambda c: c["data"].setdefault("augment", {}).update(crop_padding=-1), "key 'data.augment.crop_padding'"),
    (lambda c: c["teacher"]["train"].update(lr=-0.1), "key 'teacher.train.lr'"),
    (lambda c: c["student"]["train"].update(precision="fp16"), "train.precision: fp16 needs CUDA"),
    (lambda c: c.update(device="mcu", deploy={"input_bits": 16}),
     "deploy.input_bits: 16 is not available with 'tflm-int8'"),
    (lambda c: c.update(deploy={"formats": ["coreml-int8"]}), "deploy.formats: unknown format 'coreml-int8'"),
]


def truncated_fashion(c, tmp):
    from test_data import fake_fashion

    fake_fashion(tmp / "fm", truncate_file="x_test")
    c["data"].update(name="fashion_mnist", path=str(tmp / "fm"))


def corrupt_npz(c, tmp):
    (tmp / "d.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    c["data"].update(name="npz", path=str(tmp / "d.npz"))


def labels_out_of_range(c, tmp):
    import numpy as np

    np.savez(tmp / "d.npz", x_train=np.zeros((40, 3)), y_train=np.arange(40) % 2, x_test=np.zeros((4, 3)),
             y_test=np.array([0, 1, 2, 1]))
    c["data"].update(name="npz", path=str(tmp / "d.npz"), options={"num_classes": 2})


def image_of_wrong_size(c, tmp):
    import numpy as np
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp / "img" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((10, 10), 40 * i, dtype=np.uint8)).save(tmp / "img" / cls / f"{i}.png")
    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(tmp / "img" / "cat" / "odd.png")
    c["data"].update(name="image_folder", path=str(tmp / "img"))


def checkpoint_of_another_architecture(c, tmp):
    import torch

    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 40)}}, tmp / "other.pt")
    c["teacher"].update(checkpoint=str(tmp / "other.pt"))


BAD_FILES = [
    (truncated_fashion, "t10k-images-idx3-ubyte.gz"),
    (corrupt_npz, "d.npz"),
    (labels_out_of_range, "class indices 0..1"),
    (image_of_wrong_size, "set data.options.size"),
    (checkpoint_of_another_architecture, "made for another architecture"),
]


@pytest.mark.parametrize("make,fragment", BAD_FILES, ids=[f.__name__ for f, _ in BAD_FILES])
def test_bad_file_is_one_line_exit_2(tmp_path, make, fragment):
    cfg = tiny_config()
    make(cfg, tmp_path)
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(proc, fragment)


@pytest.mark.parametrize("mutate,fragment", BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, mutate, fragment):
    cfg = tiny_config()
    mutate(cfg)
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(proc, fragment)


def test_switching_the_teachers_model_names_the_args_the_new_one_takes(tmp_path):
    """The README's `--set teacher.model=gru` on the packaged default keeps the ResNet's width and blocks: the
    error says what a GRU takes and how to ask for its defaults, before anything is written."""
    out = tmp_path / "r"
    proc = run_cli("run", "--set", "teacher.model=gru", "--out", str(out), "--quiet")
    assert_one_line_error(proc, "teacher.args: bad arguments for model 'gru'", "'width'",
                          "it takes hidden, layers, bidirectional, dropout", "or to {} for its defaults")
    assert not out.exists()


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: [unclosed\n")
    assert_one_line_error(run_cli("run", str(bad)), "malformed YAML")
    assert_one_line_error(run_cli("run", str(tmp_path / "none.yaml")), "not found")


def test_unsafe_checkpoint_is_refused(tmp_path):
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": object()}))
    cfg = tiny_config()
    cfg["teacher"]["checkpoint"] = str(evil)
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(proc, "teacher.checkpoint")


def test_unreadable_files_are_one_line_errors(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    assert_one_line_error(run_cli("run", str(binary)), "cannot be read as text")
    text_ckpt = tmp_path / "notes.pt"
    text_ckpt.write_text("not a checkpoint")
    cfg = tiny_config()
    cfg["teacher"]["checkpoint"] = str(text_ckpt)
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(proc, "is not a readable torch checkpoint")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert_one_line_error(run_cli("run", "--out", str(a_file)), "is a file")


def test_bad_set_override(tmp_path):
    assert_one_line_error(run_cli("run", "--set", "teacher.train.epochs"), "expected key=value")
