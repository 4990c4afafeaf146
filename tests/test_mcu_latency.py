"""The Cortex-M latency estimate: fitted to published MLPerf Tiny results that each cite their source, stored as
benchmarks/mcu_latency.py computed it, and printed by a run as a range with its error."""
import json
import re
import sys
from pathlib import Path

import pytest

from conftest import run_cli, tiny_config
from edgedistill.deploy.mcu_latency import MEASUREMENTS, fit_cores, read_package_yaml, stored_fit
from edgedistill.deploy.profile import count_macs
from test_cli import write_config

ROOT = Path(__file__).resolve().parent.parent


def test_every_measurement_cites_a_published_file():
    data = read_package_yaml(MEASUREMENTS)
    for m in data["measurements"]:
        assert re.fullmatch(r"mlcommons/tiny_results_v[\d.]+@[0-9a-f]{40} closed/\S+/performance/\S+\.txt",
                            m["source"]), m
        assert m["system"] in data["systems"] and m["model"] in data["models"] and m["per_s"] > 0
    for s in data["systems"].values():
        assert "closed" in s["suite"] and s["clock_hz"] > 0 and re.search(r"@[0-9a-f]{40} closed/", s["system"])


def test_the_stored_fit_is_the_fit_of_the_measurements():
    stored = stored_fit()
    assert fit_cores(read_package_yaml(MEASUREMENTS), stored["macs"]) == stored["cores"]
    for core in ("cortex-m4", "cortex-m7", "cortex-m33"):
        f = stored["cores"][core]
        assert f["ratio_min"] < 1 < f["ratio_max"] and f["measured_points"] >= 4


def test_the_stored_macs_are_our_counter_on_the_reference_models():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mcu_latency import REFERENCE

    assert {name: count_macs(build(), shape) for name, (build, shape) in REFERENCE.items()} == stored_fit()["macs"]


def test_a_run_prints_the_mcu_latency_as_a_range_and_the_docs_give_its_error(tmp_path):
    cfg = tiny_config()
    cfg["device"] = "mcu"
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off",
                     "roles": ["student_kd"]}
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    fit = stored_fit()["cores"]["cortex-m7"]
    found = re.search(r"latency (\d+\.\d+)-(\d+\.\d+) ms \(estimated: ([\d,]+) MACs x (\d+\.\d+) cycles/MAC on a "
                      r"cortex-m7 at 216 MHz", proc.stdout)
    assert found, proc.stdout
    low, high, macs = float(found.group(1)), float(found.group(2)), int(found.group(3).replace(",", ""))
    mid = 1000 * macs * fit["cycles_per_mac"] / 216e6
    assert low == pytest.approx(mid * fit["ratio_min"], abs=0.006)
    assert high == pytest.approx(mid * fit["ratio_max"], abs=0.006)
    check = json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"]["fit"]["tflm-int8"][
        "checks"]["latency_ms"]
    assert check["used"] == check["range_ms"][1]  # the verdict is judged at the slow end
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert f"| cortex-m7 | {fit['cycles_per_mac']:.2f} | x{fit['ratio_min']:.2f} to x{fit['ratio_max']:.2f} |" in docs
    assert "closed/plumerai/results/DISCO_F746NG" in (ROOT / "src/edgedistill/deploy" / MEASUREMENTS).read_text()
