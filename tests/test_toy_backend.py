"""A backend of the user's own, from the tests folder and named by import path in deploy.formats, deploys through
the deploy core unchanged: its file lands in the run folder, its accuracy through its own runtime in metrics.json,
and its fit verdict is computed from the figures its hooks give."""
import json
from pathlib import Path

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config
from toy_backend import activation_bytes, kept_bytes

from edgedistill.deploy import get_device
from edgedistill.models import create_model

TOY = "toy_backend:BACKEND-fp32"


def test_a_backend_named_by_import_path_deploys_through_the_core(tmp_path):
    cfg = tiny_config()
    cfg["device"] = "host"
    cfg["deploy"] = {"enabled": True, "formats": [TOY], "roles": ["student_kd"], "latency_runs": 5, "qat": "off"}
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    kd = metrics["models"]["student_kd"]
    dep, rec = kd["deploy"], kd["deploy"]["formats"][TOY]
    path = out / "export" / "student_kd_fp32.pt2"
    assert rec["runtime"] == "toy" and rec["file"] == path.name and rec["file_bytes"] == path.stat().st_size
    assert rec["max_abs_logit_diff"] <= 1e-4 and rec["test_accuracy"] == kd["test"]["accuracy"]
    assert rec["host_latency"]["latency_p50_ms"] > 0 and dep["preferred"] == TOY and dep["failed"] == {}

    shape = tuple(metrics["dataset"]["input_shape"])
    kept = kept_bytes(activation_bytes(create_model("convnet", shape, 10), shape, None), path, "fp32")
    assert rec["peak_activation_bytes"] == kept  # the toy's own RAM hook, not the ONNX graph's peak
    fit, host = dep["fit"][TOY], get_device("host")
    assert fit["dtype"] == "fp32" and fit["fits"] is True
    assert fit["checks"]["flash"]["used"] == rec["file_bytes"] + host.runtime_flash_bytes
    assert fit["checks"]["ram"]["estimate"] == kept + 4 * kd["params"]  # host keeps fp32 weights in RAM
    assert metrics["early_fit_check"]["format"] == TOY and metrics["early_fit_check"]["fits"] is True
    assert not list((out / "export").glob("*.onnx"))


def test_a_backend_import_path_that_does_not_import_is_one_line(tmp_path):
    cfg = tiny_config()
    cfg["deploy"] = {"enabled": True, "formats": ["no_such_module:BACKEND-fp32"]}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "deploy.formats", "'no_such_module:BACKEND-fp32'", "cannot import module")
    assert not Path(tmp_path / "run").exists()
