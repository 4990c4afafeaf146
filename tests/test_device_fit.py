"""The fit verdict against a device profile of the user's, through the CLI as a user meets it (and one more way a
latency goes unknown, through fit_check): RAM counts what the firmware needs beyond the measured arena, a latency
budget that cannot be checked is never reported as met, and the verdict speaks for a format the device uses."""
import json

import pytest
import yaml

from conftest import run_cli, tiny_config
from edgedistill.deploy.devices import DeviceProfile
from edgedistill.deploy.fit import Footprint, fit_check, latency_warning
from test_cli import write_config

MCU = {"description": "a test board", "flash_bytes": 1048576, "cores": 1, "dtypes": ["int8"], "core": "cortex-m7",
       "clock_hz": 216000000, "formats": ["tflm-int8"], "runtime_flash_bytes": 51200}


def device_run(tmp_path, devices: dict, device: str, student: str = "mlp", student_args: dict | None = None,
               *args: str, **deploy):
    """One tiny run on a device of a catalog written for the test; returns the process and its run folder."""
    catalog = tmp_path / "devices.yaml"
    catalog.write_text(yaml.safe_dump(devices))
    cfg = tiny_config(teacher="mlp", teacher_args={"hidden": [32]}, student=student, student_args=student_args)
    cfg |= {"device": device, "device_catalog": str(catalog)}
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off",
                     "roles": ["student_kd"], **deploy}
    out = tmp_path / "run"
    return run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet", *args), out


def kd_deploy(out) -> dict:
    return json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"]


def test_weights_in_ram_count_beside_the_measured_arena_and_a_core_in_capitals_is_known(tmp_path):
    """A board that copies the model into SRAM needs the weights there as well as the arena, which holds none:
    13 KB of int8 weights overflow 8 KB of RAM however small the arena is. `core: Cortex-M7`, as a datasheet
    writes it, is the latency fit's cortex-m7: the budget is judged, not skipped."""
    devices = {"ram_board": {**MCU, "ram_bytes": 8192, "weights_in_ram": True, "core": "Cortex-M7",
                             "latency_budget_ms": 0.001}}
    proc, out = device_run(tmp_path, devices, "ram_board", "mlp", {"hidden": [256]})
    assert proc.returncode == 0, proc.stderr
    dep = kd_deploy(out)
    tflm, checks = dep["formats"]["tflm-int8"], dep["fit"]["tflm-int8"]["checks"]
    ram, lat = checks["ram"], checks["latency_ms"]
    assert tflm["measured_ram_bytes"] < 8192 < ram["used"] and not ram["fits"]
    assert ram["used"] == tflm["measured_ram_bytes"] + tflm["arena_margin_bytes"] + 13066  # 40x256+256 + 256x10+10
    assert "weights (this device keeps them in RAM)" in ram["how"]
    assert lat["fits"] is False and lat["range_ms"] and "cycles/MAC on a Cortex-M7" in lat["how"]
    assert "cannot be checked" not in proc.stderr and "no calibrated latency fit" not in proc.stderr
    summary = next(ln for ln in proc.stdout.splitlines() if ln.startswith("On ram_board"))
    assert "does NOT fit" in summary and "ram needs" in summary


BOARD = {"description": "a test board", "flash_bytes": 262144, "ram_bytes": 32768, "cores": 1, "dtypes": ["int8"],
         "weights_in_ram": False, "latency_budget_ms": 0.001, "formats": ["onnxruntime-int8"]}


def test_a_latency_budget_nothing_can_check_is_never_reported_met(tmp_path):
    """No latency figure exists for an M0+ (no fit): the budget is warned about before training and the verdict
    says it could not be checked, where it said "fits"."""
    why = "core 'cortex-m0plus' has no calibrated latency fit (cores with one: cortex-m33, cortex-m4, cortex-m7)"
    proc, out = device_run(tmp_path, {"board": {**BOARD, "core": "cortex-m0plus", "clock_hz": 48000000}}, "board")
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("edgedistill: warning: device 'board': latency_budget_ms 0.001 cannot be checked")
    assert why in first
    metrics = json.loads((out / "metrics.json").read_text())
    verdict = metrics["models"]["student_kd"]["deploy"]["fit"]["onnxruntime-int8"]
    assert verdict["fits"] is None and verdict["checks"]["latency_ms"]["fits"] is None
    assert metrics["early_fit_check"]["fits"] is None
    summary = next(ln for ln in proc.stdout.splitlines() if ln.startswith("On board"))
    assert "onnxruntime-int8 fits:" not in summary and "whether it meets the latency budget is unknown" in summary
    assert "the 0.001 ms latency budget could not be checked" in summary


def test_an_fp32_rate_alone_gives_no_int8_latency_and_says_what_to_add():
    """The same unknown from the other side: a profile with macs_per_second for fp32 only cannot time its int8 file."""
    device = DeviceProfile(name="board", **{**BOARD, "macs_per_second": {"fp32": 1.0e6}})
    fp = Footprint(file_bytes=1000, estimated_ram_bytes=100, weight_bytes=1000, macs=10_000)
    verdict = fit_check(device, "int8", fp) | {"format": "onnxruntime-int8"}
    assert verdict["fits"] is None and verdict["checks"]["latency_ms"]["fits"] is None
    warning = latency_warning(device, verdict)
    assert warning.startswith("device 'board': latency_budget_ms 0.001 cannot be checked for int8: "
                              "macs_per_second has no int8 rate (only fp32); give macs_per_second: {int8: ...}")
    assert fit_check(device, "fp32", fp)["checks"]["latency_ms"]["used"] == pytest.approx(10.0)


def test_a_format_exported_for_another_device_does_not_take_over_the_verdict(tmp_path):
    """`export --format tflm-int8` on a run for `host` that made only the fp32 ONNX file adds the int8 .tflite; the
    verdict keeps speaking for the ONNX file the host uses, where it went to the first int8 file of the merged list."""
    cfg = tiny_config(teacher="mlp", teacher_args={"hidden": [32]}, student="mlp")
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off",
                     "formats": ["onnxruntime-fp32"], "roles": ["student_kd"]}
    out = tmp_path / "run"
    assert run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("export", str(out), "--format", "tflm-int8", "--role", "student_kd")
    assert proc.returncode == 0, proc.stderr
    dep = kd_deploy(out)
    assert "tflm-int8" in dep["formats"] and dep["preferred"] == "onnxruntime-fp32"
    assert "the KD student as onnxruntime-fp32 fits" in (out / "report.md").read_text()
