"""The fit verdict against a device profile of the user's, through the CLI as a user meets it: RAM counts what the
firmware needs beyond the measured arena, a latency budget that cannot be checked is never reported as met, and
the verdict speaks for a format the device uses."""
import json

import yaml

from conftest import run_cli, tiny_config
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


def test_weights_in_ram_count_beside_the_measured_arena(tmp_path):
    """A board that copies the model into SRAM needs the weights there as well as the arena, which holds none:
    13 KB of int8 weights overflow 8 KB of RAM however small the arena is."""
    devices = {"ram_board": {**MCU, "ram_bytes": 8192, "weights_in_ram": True}}
    proc, out = device_run(tmp_path, devices, "ram_board", "mlp", {"hidden": [256]})
    assert proc.returncode == 0, proc.stderr
    dep = kd_deploy(out)
    tflm, ram = dep["formats"]["tflm-int8"], dep["fit"]["tflm-int8"]["checks"]["ram"]
    assert tflm["measured_ram_bytes"] < 8192 < ram["used"] and not ram["fits"]
    assert ram["used"] == tflm["measured_ram_bytes"] + tflm["arena_margin_bytes"] + 13066  # 40x256+256 + 256x10+10
    assert "weights (this device keeps them in RAM)" in ram["how"]
    summary = next(ln for ln in proc.stdout.splitlines() if ln.startswith("On ram_board"))
    assert "does NOT fit" in summary and "ram needs" in summary
