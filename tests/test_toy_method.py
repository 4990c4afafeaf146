"""A method from outside the package: its file (tests/toy_method.py, settings included) and one register_method
call are all it takes to validate, train, record and report it through the CLI. (Never imported here: the
registry of this process would then hold it for every later test.)"""
from __future__ import annotations

import json

import yaml

from conftest import run_cli, tiny_config


def toy_config(**settings) -> dict:
    cfg = tiny_config()
    cfg["distill"] = {"plugins": ["toy_method"], "method": "softmax_l1", "softmax_l1": settings}
    return cfg


def test_a_registered_method_runs_end_to_end_through_the_cli(tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_config(weight=0.5)))
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["distill"]["softmax_l1"] == {"weight": 0.5}
    kd_history = metrics["models"]["student_kd"]["train"]["history"]
    assert all(row["train_softmax_l1"] > 0 for row in kd_history)
    assert not any("train_softmax_l1" in row for row in metrics["models"]["student_scratch"]["train"]["history"])
    assert "softmax_l1 (weight 0.5)" in (tmp_path / "run" / "report.md").read_text()


def test_its_settings_are_checked_like_a_builtin_methods(tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_config(wieght=0.5)))
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "unknown key 'distill.softmax_l1.wieght'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
    config.write_text(yaml.safe_dump({**toy_config(), "distill": {"plugins": ["no_such_module"]}}))
    proc = run_cli("run", str(config), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "distill.plugins: cannot import 'no_such_module'" in proc.stderr, proc.stderr

