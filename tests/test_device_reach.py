"""Can the device's runtime run the student? Checked before anything trains, through the CLI as a user meets it:
a student TFLite Micro cannot run stops in one line naming the op or layer, a run that made no deliverable exits 3,
an Ethos-U deliverable is Vela's compiled file, and `export` names the format that failed."""
import json

import pytest
import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config


def mcu_config(student: str, **deploy) -> dict:
    cfg = tiny_config(student=student)
    cfg["device"] = "mcu"
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off", **deploy}
    return cfg


@pytest.mark.parametrize("student,fragments", [
    ("user_models:gru_student", ["layer 'rnn' (GRU)", "IndexError"]),
    ("user_models:sorting_student", ["operator STABLEHLO_SORT", "aten.sort at", "user_models.py:"]),
    ("user_models:numpy_student", ["user_models.py:", ".numpy()"]),
])
def test_a_student_tflm_cannot_run_stops_before_training(tmp_path, student, fragments):
    cfg = write_config(tmp_path, mcu_config(student))
    proc = run_cli("run", str(cfg), "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(proc, "TensorFlow Lite Micro (tflm-int8)", "device 'mcu'", "deploy.required: false",
                          *fragments)
    assert "Didn't find op" not in proc.stderr + proc.stdout  # TFLM's own C++ output stays off the terminal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # nothing written


def test_deploy_required_false_trains_anyway_and_says_there_is_no_deliverable(tmp_path):
    cfg = write_config(tmp_path, mcu_config("user_models:gru_student", required=False, roles=["student_kd"]))
    out = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "layer 'rnn' (GRU)" in lines[0] and "trains anyway" in lines[0]
    assert lines[-1].startswith("edgedistill: warning: no deliverable") and "Traceback" not in proc.stderr
    assert (out / "student_kd.pt").is_file()
    report = (out / "report.md").read_text().splitlines()
    assert report[2].startswith("**No deliverable")


def test_a_run_whose_deliverable_failed_exits_3_and_leaves_no_unusable_file(tmp_path):
    cfg = write_config(tmp_path, mcu_config("user_models:sorts_once_trained", roles=["teacher", "student_kd"]))
    out = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(out), "--quiet")
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgedistill: error: no deliverable") and "STABLEHLO_SORT" in last, proc.stderr
    assert "Didn't find op" not in proc.stderr + proc.stdout
    assert (out / "report.md").read_text().splitlines()[2].startswith("**No deliverable")
    exported = sorted(p.name for p in (out / "export").iterdir())
    assert "teacher_int8.tflite" in exported and not any(n.startswith("student") for n in exported), exported
    assert "Didn't find op for builtin opcode 'STABLEHLO_SORT'" in (out / "logs" / "libraries.log").read_text()


def host_two_formats(**deploy) -> dict:
    """A GRU student on `host`, asked for as int8 ONNX (which it exports to) and as tflm-int8 (which it cannot)."""
    cfg = mcu_config("user_models:gru_student", formats=["onnxruntime-int8", "tflm-int8"], roles=["student_kd"],
                     **deploy)
    cfg["device"] = "host"
    return cfg


def test_a_requested_format_beside_the_preferred_one_is_probed_before_training(tmp_path):
    """The verdict speaks for onnxruntime-int8, which runs the GRU; tflm-int8, also asked for, cannot be made: the
    run stops before training, where it trained and lost that file without a word."""
    proc = run_cli("run", str(write_config(tmp_path, host_two_formats())), "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(proc, "device 'host'", "TensorFlow Lite Micro (tflm-int8)", "layer 'rnn' (GRU)",
                          "deploy.required: false")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # nothing written


def test_a_format_that_cannot_be_made_is_warned_about_before_and_after_training(tmp_path):
    """deploy.required: false trains anyway, saying so before training, and says again on stderr that the trained
    student was not exported in that format (report.md's table said it alone)."""
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, host_two_formats(required=False))), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "(tflm-int8)" in lines[0] and "trains anyway" in lines[0], proc.stderr
    after = [ln for ln in lines if "student_kd was not exported as tflm-int8" in ln]
    assert len(after) == 1 and "layer 'rnn' (GRU)" in after[0], proc.stderr
    assert (out / "export" / "student_kd_int8.onnx").is_file()


def test_a_format_of_the_devices_own_list_that_cannot_be_made_is_said_and_the_run_goes_on(tmp_path):
    """A format the user did not name (the device lists it) does not stop the run under deploy.required: the
    deliverable comes from the formats that can be made, as before the formats beside it were probed."""
    catalog = tmp_path / "devices.yaml"
    catalog.write_text(yaml.safe_dump({"two_runtimes": {
        "description": "a board with ONNX Runtime and TFLite Micro", "flash_bytes": 10**9, "ram_bytes": 10**9,
        "cores": 1, "dtypes": ["fp32", "int8"], "weights_in_ram": True, "measured_on_host": True,
        "formats": ["onnxruntime-int8", "tflm-int8"]}}))
    cfg = mcu_config("user_models:gru_student", roles=["student_kd"])
    cfg |= {"device": "two_runtimes", "device_catalog": str(catalog)}
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "(tflm-int8)" in ln and "layer 'rnn' (GRU)" in ln]
    assert len(said) == 2, proc.stderr  # before training, and once the trained student was exported
    assert "not named in deploy.formats, so the other formats are made" in said[0]
    assert "student_kd was not exported as tflm-int8" in said[1]
    assert (out / "export" / "student_kd_int8.onnx").is_file()


def test_the_ethos_u_deliverable_is_velas_compiled_file(tmp_path):
    cfg = mcu_config("convnet", roles=["student_kd"])
    cfg["device"] = "ethos_u55"
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("deliverable:"))
    assert line.startswith("deliverable: export/student_kd_int8_vela.tflite + student_kd_int8_vela.h, "
                           "student_kd_int8_vela.cc"), line
    export = out / "export"
    assert not (export / "student_kd_int8.h").exists() and not (export / "student_kd_int8.cc").exists()
    compiled = (export / "student_kd_int8_vela.tflite").read_bytes()
    source = (export / "student_kd_int8_vela.cc").read_text()
    assert f"g_student_kd_int8_vela_len = {len(compiled)};" in source
    assert "resolver.AddEthosU()" in (export / "student_kd_int8_vela.h").read_text()
    fmt = json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"]["formats"]["tflm-int8"]
    assert fmt["deliverable"] == "student_kd_int8_vela.tflite" and "ethos-u" in fmt["operators"]


def test_a_misspelt_npu_accelerator_stops_before_training(tmp_path):
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"my_npu": {
        "description": "typo", "flash_bytes": 2097152, "ram_bytes": 524288, "cores": 1, "dtypes": ["int8"],
        "weights_in_ram": False, "formats": ["tflm-int8"], "npu": {"accelerator_config": "ethos-u55-12"}}}))
    cfg = mcu_config("convnet")
    cfg.update(device="my_npu", device_catalog=str(tmp_path / "devices.yaml"))
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(proc, "npu.accelerator_config 'ethos-u55-12'", "ethos-u55-128")
    assert not (tmp_path / "run").exists()


def test_export_names_the_format_that_failed_and_exits_3(tmp_path):
    cfg = tiny_config(student="user_models:sorting_student")
    cfg["device"] = "host"
    cfg["deploy"] = {"enabled": True, "formats": ["onnxruntime-fp32"], "quantize": False, "latency_runs": 5,
                     "qat": "off", "roles": ["student_kd"]}
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("export", str(out), "--format", "tflm-int8", "--format", "onnxruntime-int8", "--role",
                   "student_kd")
    assert proc.returncode == 3, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgedistill: error:")]
    assert len(errors) == 1 and "--format tflm-int8" in errors[0] and "STABLEHLO_SORT" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "Didn't find op" not in proc.stderr + proc.stdout
    assert "onnxruntime-int8: `export/student_kd_int8.onnx`" in proc.stdout
    assert not (out / "export" / "student_kd_int8.tflite").exists()
    dep = json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"]
    assert "STABLEHLO_SORT" in dep["failed"]["tflm-int8"] and "onnxruntime-int8" in dep["formats"]


def test_tune_stops_before_its_first_trial_on_a_student_the_runtime_cannot_run(tmp_path):
    cfg = write_config(tmp_path, mcu_config("user_models:gru_student"))
    proc = run_cli("tune", str(cfg), "--out", str(tmp_path / "study"), "--trials", "2", "--seeds", "0")
    assert_one_line_error(proc, "TensorFlow Lite Micro (tflm-int8)", "layer 'rnn' (GRU)", "deploy.required: false")
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_tune_whose_best_recipe_made_no_deliverable_exits_3(tmp_path):
    cfg = write_config(tmp_path, mcu_config("user_models:sorts_once_trained", roles=["student_kd"]))
    out = tmp_path / "study"
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "1", "--seeds", "2", "--methods", "kd",
                   "--quiet")
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgedistill: error: no deliverable") and "STABLEHLO_SORT" in last, proc.stderr
    assert "Traceback" not in proc.stderr and (out / "tune.md").is_file()
    assert (out / "confirm" / "seed_0" / "report.md").read_text().splitlines()[2].startswith("**No deliverable")
