"""Refactoring must not change behaviour: a short deterministic run, every step on, gives the metrics recorded in
tests/golden/ before the pipeline was split into stages. Regenerate only for an intended change:
`python tests/test_golden.py` (and say why in the commit)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

def golden_path() -> Path:
    """One record per CPU kernel set: the same run differs in the 5th digit between AVX2 and AVX-512 kernels (the
    AVX2 record is from an AMD EPYC before the stage refactor; the AVX512 one from commit 562ac98 on an Intel Xeon,
    which the image-streaming change matched bit for bit on that machine)."""
    import torch

    return Path(__file__).resolve().parent / "golden" / f"tiny_run.{torch.backends.cpu.get_cpu_capability()}.json"


GOLDEN = golden_path()
HISTORY_KEYS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def golden_config() -> dict:
    from conftest import tiny_config

    cfg = tiny_config(student_args={"channels": [8, 16]})
    cfg["teacher"]["train"]["epochs"] = 2
    cfg["student"]["train"]["epochs"] = 2
    cfg["compress"] = {"prune": {"enabled": True, "target_params": 20000, "epochs": 1}}
    cfg["device"] = "host"
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "always", "qat_epochs": 1}
    cfg["deterministic"] = True
    return cfg


def behaviour(metrics: dict) -> dict:
    """What a refactor must keep: every model's scores, footprint, training curve and int8 accuracy."""
    out = {"comparison": metrics["comparison"], "models": {}}
    renamed = {"student_pruned": "teacher_pruned"}  # schema 3's name for the same model
    for role, m in sorted(metrics["models"].items()):
        role = renamed.get(role, role)
        formats = m.get("deploy", {}).get("formats", {})
        out["models"][role] = {
            "params": m["params"], "size_fp32_bytes": m["size_fp32_bytes"],
            "test": {k: m["test"][k] for k in ("accuracy", "f1_macro", "confusion_matrix")},
            "val": m["val"],
            "history": [{k: row[k] for k in HISTORY_KEYS} for row in m.get("train", {}).get("history", [])],
            "formats": {k: {"test_accuracy": f["test_accuracy"], "val_accuracy": f["val_accuracy"]}
                        for k, f in sorted(formats.items())},
        }
    return out


def close(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))} differ"]
        return [d for k in a for d in close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def run_golden(out: Path) -> dict:
    import edgedistill

    return behaviour(edgedistill.run(golden_config(), out_dir=out, progress=False).metrics)


@pytest.fixture(scope="session")
def golden_run(tmp_path_factory) -> tuple[Path, dict]:
    """The one run with every optional step on, made once per session; the pruning and QAT tests read it too."""
    from conftest import shared_run

    return shared_run(tmp_path_factory, "golden", golden_config())


@pytest.mark.slow
def test_same_config_gives_the_recorded_metrics(golden_run):
    if not GOLDEN.exists():
        pytest.skip(f"no golden record for this CPU's kernels ({GOLDEN.name}); record one from a commit known to be "
                    "right with `python tests/test_golden.py`")
    got = json.loads(json.dumps(behaviour(golden_run[1])))
    diffs = close(json.loads(GOLDEN.read_text()), got)
    assert not diffs, "behaviour changed:\n" + "\n".join(diffs[:20])


@pytest.mark.slow
def test_pruned_teacher_is_fine_tuned_deployed_and_reported(golden_run):
    out, m = golden_run
    pruned = m["models"]["teacher_pruned"]
    assert pruned["pruning"]["params_before"] > 20000 >= pruned["pruning"]["params_after"] == pruned["params"]
    assert pruned["deploy"]["macs"] < m["models"]["teacher"]["deploy"]["macs"]
    assert pruned["deploy"]["formats"]["onnxruntime-fp32"]["host_latency"]["latency_p50_ms"] > 0
    assert pruned["deploy"]["formats"]["onnxruntime-fp32"]["max_abs_logit_diff"] <= 1e-4
    assert (out / "teacher_pruned.pt").is_file() and "pruned teacher (KD)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_qat_student_is_deployed_and_reported(golden_run):
    out, m = golden_run
    qat = m["models"]["student_kd_qat"]
    assert qat["qat_reason"] == "deploy.qat: always"
    assert set(qat["deploy"]["formats"]) == {"onnxruntime-fp32", "onnxruntime-int8"}
    assert (out / "export" / "student_kd_qat_int8.onnx").is_file()
    assert "student (KD + QAT)" in (out / "report.md").read_text()


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(GOLDEN.parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(run_golden(Path(tmp) / "run"), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
