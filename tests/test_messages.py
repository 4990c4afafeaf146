"""Messages that name the op, the field and the file, through the CLI as a user meets them, and progress a log can
hold (no carriage returns when stderr is a pipe)."""
import json
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from conftest import run_cli, tiny_config, write_digits_folder
from test_cli import assert_one_line_error, write_config

ROOT = Path(__file__).resolve().parent.parent


def test_unquoted_off_is_read_as_off_where_the_schema_wants_a_word(tmp_path):
    text = yaml.safe_dump(tiny_config()).replace("deploy:\n  enabled: false\n", "deploy:\n  enabled: false\n  qat: off\n")
    assert "qat: off" in text
    (tmp_path / "exp.yaml").write_text(text)
    out = tmp_path / "run"
    proc = run_cli("run", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["deploy"]["qat"] == "off"


def test_a_yaml_boolean_where_a_word_is_wanted_is_named_plainly(tmp_path):
    cfg = tiny_config()
    cfg["student"]["train"]["optimizer"] = "WORD"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg).replace("optimizer: WORD", "optimizer: no"))
    proc = run_cli("run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "key 'student.train.optimizer'", "unquoted", "'sgd' or 'adamw'", "quote it")


def test_set_with_an_empty_key_names_the_set(tmp_path):
    proc = run_cli("run", str(write_config(tmp_path, tiny_config())), "--set", "=5", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "--set '=5'", "empty")
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_that_is_a_folder_or_a_device_is_named_as_such(tmp_path):
    (tmp_path / "ckpt").mkdir()
    for path, fragment in ((tmp_path / "ckpt", "is a folder"), (Path("/dev/zero"), "not a regular file")):
        cfg = tiny_config()
        cfg["teacher"]["checkpoint"] = str(path)
        proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"))
        assert_one_line_error(proc, "teacher.checkpoint", str(path), fragment)


def test_a_user_model_file_with_a_syntax_error_is_named_at_its_line(tmp_path):
    (tmp_path / "broken_model.py").write_text("import torch\n\ndef build(input_shape, num_classes)\n    return None\n")
    cfg = tiny_config(student="broken_model:build")
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"),
                   env_extra={"PYTHONPATH": f"{tmp_path}:{ROOT / 'tests'}"})
    assert_one_line_error(proc, "student.model", "broken_model.py:3", "SyntaxError")
    assert "student.args" not in proc.stderr


def test_export_format_errors_name_the_format_option(deployed_run):
    out, _ = deployed_run
    proc = run_cli("export", str(out), "--format", "tensorrt-int8")
    assert_one_line_error(proc, "--format: unknown format 'tensorrt-int8'")
    assert "deploy.formats" not in proc.stderr


def test_a_bad_edgedistill_cache_names_the_variable(tmp_path):
    (tmp_path / "a_file").write_text("x")
    cfg = tiny_config(dataset="image_folder", path=str(write_digits_folder(tmp_path / "digits")))
    cfg["data"].pop("limit_test")
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"),
                   env_extra={"EDGEDISTILL_CACHE": str(tmp_path / "a_file" / "cache")})
    assert_one_line_error(proc, "EDGEDISTILL_CACHE=", "cannot write the image pack")
    assert not (tmp_path / "r").exists()


def test_a_second_yaml_document_is_named(tmp_path):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(tiny_config()) + "---\nseed: 3\n")
    proc = run_cli("run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "second YAML document", "'---'")
    assert "malformed" not in proc.stderr


def test_a_failed_student_search_leaves_no_folder_so_the_rerun_is_not_refused(tmp_path):
    cfg = tiny_config()
    cfg["student"] = {"model": "auto", "search": {"trials": 2, "epochs": 1, "max_steps_per_epoch": 2},
                      "train": cfg["student"]["train"]}
    cfg.update(device="jetson_nano", latency_budget_ms=1e-6)  # probes through ONNX Runtime: 3x faster than mcu's LiteRT
    cfg["deploy"] = {"enabled": True, "calibration_samples": 16}
    out = tmp_path / "r"
    for _ in range(2):  # the corrected rerun meets the same search, not "--out holds files"
        proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
        assert_one_line_error(proc, "student: auto found no convnet that fits device 'jetson_nano'")
        assert not out.exists()


def test_export_role_teacher_of_an_onnx_teacher_run_says_why_nothing_was_exported(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(40, 10)).eval()
    torch.onnx.export(net, (torch.zeros(2, 1, 40),), str(tmp_path / "t.onnx"), dynamo=True, external_data=False,
                      input_names=["input"], output_names=["out"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    cfg = tiny_config()
    cfg["teacher"] = {"model": "onnx", "args": {"path": str(tmp_path / "t.onnx")}}
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet").returncode == 0
    before = (out / "metrics.json").read_bytes()
    proc = run_cli("export", str(out), "--format", "onnxruntime-fp32", "--role", "teacher")
    assert_one_line_error(proc, "--role teacher: nothing to export", "onnx teacher")
    assert (out / "metrics.json").read_bytes() == before and not (out / "export").exists()


def test_the_readme_says_a_config_runs_code_and_what_it_imports():
    readme = (ROOT / "README.md").read_text()
    assert "A config runs code, like a script" in readme
    for what in ("teacher.model", "student.model", "members", "pkg.module:factory"):
        assert what in readme.split("A config runs code, like a script")[1][:1200], what


def test_piped_progress_is_one_line_per_epoch_without_carriage_returns(tmp_path):
    cfg = tiny_config()
    cfg["teacher"]["train"]["epochs"] = 2
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out))  # stderr is a pipe, not --quiet
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    teacher = [ln for ln in lines if ln.startswith("train teacher: epoch")]
    assert [ln.split(",")[0] for ln in teacher] == ["train teacher: epoch 1/2", "train teacher: epoch 2/2"]
    assert "val_acc" in teacher[0] and any(ln.startswith("train student_kd: epoch 1/1") for ln in lines)
    assert json.loads((out / "metrics.json").read_text())["models"]["teacher"]["train"]["epochs"] == 2


def test_piped_tune_progress_is_one_line_per_epoch_without_carriage_returns(tmp_path):
    cfg = tiny_config()
    cfg["teacher"]["train"]["epochs"] = 2
    proc = run_cli("tune", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "study"), "--trials", "1",
                   "--seeds", "0", "--methods", "kd")  # stderr is a pipe, not --quiet
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr + proc.stdout
    teacher = [ln.split(",")[0] for ln in proc.stderr.splitlines() if ln.startswith("train teacher: epoch")]
    assert teacher == ["train teacher: epoch 1/2", "train teacher: epoch 2/2"], proc.stderr
    assert proc.stdout.startswith("trial 0: complete, kd (")


def test_export_of_a_student_auto_run_rebuilds_the_student_the_search_chose(tmp_path):
    """config.yaml keeps `student: auto`; export reads the chosen family and arguments from the run's records."""
    cfg = tiny_config("digits", "mlp", "mlp")
    cfg["student"] = {"model": "auto", "train": cfg["student"]["train"],
                      "search": {"family": "mlp", "trials": 2, "epochs": 1, "max_steps_per_epoch": 2}}
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("export", str(out), "--format", "onnxruntime-fp32", "--role", "student_kd")
    assert proc.returncode == 0, proc.stderr
    assert (out / "export" / "student_kd_fp32.onnx").is_file()
    assert "onnxruntime-fp32" in json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"][
        "formats"]


def test_export_checks_every_checkpoint_before_it_writes_a_file(tmp_path):
    """A student checkpoint that is not the run's stops the export before the teacher's file is made; a config.yaml
    edited since the run is refused before anything is rebuilt."""
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, tiny_config())), "--out", str(out), "--quiet").returncode == 0
    written = (out / "config.yaml").read_text()
    saved = yaml.safe_load(written)
    saved["data"]["limit_test"] = 50  # the exports would be scored on other rows than the run's
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    before = (out / "metrics.json").read_bytes()
    assert_one_line_error(run_cli("export", str(out), "--format", "onnxruntime-int8"),
                          f"export {out}: config.yaml was edited since the run started")
    (out / "config.yaml").write_text(written)
    (out / "student_scratch.pt").write_bytes((out / "teacher.pt").read_bytes())  # another model's weights
    proc = run_cli("export", str(out), "--format", "onnxruntime-int8")
    assert_one_line_error(proc, "student_scratch.pt")
    assert not (out / "export").exists() and (out / "metrics.json").read_bytes() == before


def test_csv_and_device_catalog_mistakes_name_their_own_field_and_what_to_do(tmp_path):
    """An independent audit of the UserError messages (2026-12-08): a missing test CSV was reported as data.path, a
    misspelt csv option named an internal function, and a device catalog that is not UTF-8 was an internal error."""
    train = tmp_path / "train.csv"
    train.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    other = tmp_path / "other.csv"
    other.write_text("a,c,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))

    def csv_run(name: str, **options) -> None:
        cfg = tiny_config(dataset="csv", teacher="mlp", student="mlp")
        cfg["data"] |= {"path": str(train), "options": options}
        return run_cli("run", str(write_config(tmp_path, cfg, f"{name}.yaml")), "--out", str(tmp_path / name),
                       "--quiet")

    assert_one_line_error(csv_run("gone", test_path=str(tmp_path / "gone.csv")),
                          "data.options.test_path: ", "gone.csv' does not exist; point it at the test CSV")
    assert_one_line_error(csv_run("cols", test_path=str(other)), "data.options.test_path: ",
                          "has the feature columns ['a', 'c'], but", "has ['a', 'b']; give both files the same")
    assert_one_line_error(csv_run("typo", lable_column="label"), "data.options for 'csv': the loader got an "
                          "unexpected keyword argument 'lable_column'; it takes label_column, test_path, "
                          "test_fraction, standardize: set data.options to those")
    catalog = tmp_path / "devices.yaml"
    catalog.write_bytes(b"board:\n  description: \xff\xfe\n")
    cfg = tiny_config() | {"device_catalog": str(catalog)}
    assert_one_line_error(run_cli("run", str(write_config(tmp_path, cfg, "cat.yaml")), "--out", str(tmp_path / "c"),
                                  "--quiet"), "device_catalog: cannot read", "UnicodeDecodeError",
                          "point device_catalog at a UTF-8 YAML file")
    assert not any((tmp_path / name).exists() for name in ("gone", "cols", "typo", "c"))
