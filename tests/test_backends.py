"""Every edge runtime on a tiny model, through its real converter and its real host runtime: ExecuTorch, LiteRT,
TensorFlow Lite Micro (C source, measured arena) and Vela for an Ethos-U NPU; `edgedistill export` on a finished
run; a runtime that is not installed refused before anything is written."""
import json
import shutil

import numpy as np
import pytest
import torch

from edgedistill.data import load_dataset
from edgedistill.deploy import deploy_model, get_device
from edgedistill.models import create_model
from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error

ALL_FORMATS = [f"{r}-{d}" for r in ("onnxruntime", "executorch", "litert", "tflm") for d in ("fp32", "int8")]


@pytest.fixture(scope="module")
def digits_model():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("convnet", data.input_shape, 10, {"channels": [8, 16], "head": "avg"})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)  # trained a little: an untrained net's logits are near ties
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(data.x_test)).numpy()
    return data, model, logits


@pytest.mark.slow  # every converter and runtime, a minute; the fast tier keeps ONNX Runtime and the TFLM/Vela path
def test_every_runtime_scores_its_own_file_and_agrees_with_pytorch(tmp_path, digits_model):
    data, model, logits = digits_model
    dep = deploy_model(model, "student_kd", data.input_shape, tmp_path, data, logits, data.x_train[:64],
                       get_device("host"), ALL_FORMATS, latency_runs=5)
    assert dep["failed"] == {} and set(dep["formats"]) == set(ALL_FORMATS)
    torch_acc = float(np.mean(logits.argmax(1) == data.y_test))
    assert torch_acc > 0.8
    for key, f in dep["formats"].items():
        assert (tmp_path / f["file"]).stat().st_size == f["file_bytes"], key
        assert f["host_latency"]["latency_p50_ms"] > 0 and 0 <= f["val_accuracy"] <= 1
        if f["dtype"] == "fp32":
            assert f["max_abs_logit_diff"] <= 1e-4 and f["test_accuracy"] == pytest.approx(torch_acc), key
        else:  # int8 moves logits, not (much) the decisions
            assert f["argmax_agreement"] >= 0.95 and f["max_abs_logit_diff"] > 0, key
            assert abs(f["test_accuracy"] - torch_acc) <= 0.03, key
    assert {f["file"] for f in dep["formats"].values()} >= {"student_kd_int8.pte", "student_kd_int8.tflite",
                                                            "student_kd_fp32.pte", "student_kd_int8.onnx"}
    int8 = dep["formats"]["tflm-int8"]  # the file LiteRT and TFLite Micro share
    assert int8["file"] == dep["formats"]["litert-int8"]["file"]
    assert int8["file_bytes"] < 0.7 * dep["formats"]["tflm-fp32"]["file_bytes"]  # a tiny model: mostly flatbuffer
    assert int8["measured_ram_bytes"] > int8["peak_activation_bytes"] > 0  # the arena holds more than activations
    # the allocator's own total leaves out the kernels' temporary memory at start-up: a board given it fails
    assert int8["measured_ram_bytes"] >= int8["arena_recorded_total_bytes"] and int8["measured_ram_bytes"] % 16 == 0
    assert "resolver.AddConv2D();" in int8["op_resolver"] and int8["host_latency"]["meaningful"] is False
    source = (tmp_path / "student_kd_int8.cc").read_text()
    data_bytes = (tmp_path / "student_kd_int8.tflite").read_bytes()
    assert f"g_student_kd_int8_len = {len(data_bytes)};" in source and source.count("0x") == len(data_bytes)
    assert dep["preferred"] == "onnxruntime-int8"  # host lists ONNX Runtime first


def test_ethos_u_fit_comes_from_vela(tmp_path, digits_model):
    data, model, logits = digits_model
    dep = deploy_model(model, "student_kd", data.input_shape, tmp_path, data, logits, data.x_train[:64],
                       get_device("ethos_u55"), ["tflm-int8"], latency_runs=5)
    npu = dep["formats"]["tflm-int8"]["npu"]
    assert (tmp_path / "student_kd_int8_vela.tflite").stat().st_size == npu["file_bytes"]
    assert npu["accelerator"] == "Ethos_U55_128" and npu["sram_bytes"] > 0 and npu["inference_ms"] > 0
    checks = dep["fit"]["tflm-int8"]["checks"]
    assert checks["ram"]["used"] == npu["sram_bytes"] and "Vela" in checks["ram"]["how"]
    assert checks["latency_ms"]["used"] == npu["inference_ms"] and "Vela" in checks["latency_ms"]["how"]
    assert dep["fit"]["tflm-int8"]["measured"] == ["flash", "ram", "latency"]


def test_export_command_adds_formats_to_a_finished_run(deployed_run, tmp_path):
    out, _ = deployed_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    proc = run_cli("export", str(run), "--format", "executorch-int8", "--role", "student_kd")
    assert proc.returncode == 0, proc.stderr
    assert "student (KD), executorch-int8: `export/student_kd_int8.pte`" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    dep = metrics["models"]["student_kd"]["deploy"]
    assert set(dep["formats"]) == {"tflm-int8", "executorch-int8"} and dep["preferred"] == "tflm-int8"
    assert dep["formats"]["executorch-int8"]["argmax_agreement"] >= 0.9
    assert "executorch-int8" in (run / "report.md").read_text()
    assert "executorch-int8" not in metrics["models"]["teacher"]["deploy"]["formats"]  # --role: the student alone
    nobody = run_cli("export", str(run), "--format", "onnxruntime-int8", "--role", "nobody")
    assert nobody.returncode == 2 and "--role:" in nobody.stderr and "has no model 'nobody'" in nobody.stderr
    bad = run_cli("export", str(run), "--format", "tensorrt-int8")
    assert bad.returncode == 2 and "unknown format 'tensorrt-int8'" in bad.stderr and "Traceback" not in bad.stderr
    before = (run / "metrics.json").read_bytes()
    (run / "student_scratch.pt").rename(tmp_path / "aside.pt")  # lost: export no longer leaves that model out silently
    assert_one_line_error(run_cli("export", str(run), "--format", "onnxruntime-fp32"), f"export {run}",
                          f"{run / 'student_scratch.pt'} is missing", "--role")
    assert (run / "metrics.json").read_bytes() == before and not (run / "export" / "student_kd_fp32.onnx").exists()
    (tmp_path / "aside.pt").rename(run / "student_scratch.pt")
    (run / "config.yaml").rename(tmp_path / "aside.yaml")
    assert_one_line_error(run_cli("export", str(run), "--format", "onnxruntime-fp32"), f"export {run}: config.yaml",
                          "restore it")
    (tmp_path / "aside.yaml").rename(run / "config.yaml")
    (run / "report.html").unlink()
    (run / "report.html").mkdir()  # a folder in the way of a report: named, and metrics.json already holds the file
    proc = run_cli("export", str(run), "--format", "onnxruntime-fp32", "--role", "student_kd")
    assert_one_line_error(proc, f"cannot use {run / 'report.html'}: Is a directory", "move or remove it")
    assert "onnxruntime-fp32" in json.loads((run / "metrics.json").read_text())["models"]["student_kd"]["deploy"][
        "formats"] and (run / "export" / "student_kd_fp32.onnx").is_file()


def test_a_runtime_that_is_not_installed_is_refused_before_anything_is_written(tmp_path):
    """TFLite Micro hidden from the interpreter, as on a machine without the extra: one line naming the pip command."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tflite_micro':\n            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n")
    cfg = tiny_config()
    cfg["device"] = "mcu"
    cfg.pop("deploy")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(cfg))
    import os
    from conftest import TESTS

    proc = run_cli("run", str(config), "--out", str(tmp_path / "r"),
                   env_extra={"PYTHONPATH": f"{shim}{os.pathsep}{TESTS}"})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "format 'tflm-int8' needs the tflm runtime" in line
    assert "pip install 'edgedistill[tflm]'" in line
    assert not (tmp_path / "r").exists()
