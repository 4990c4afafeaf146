"""What a tracked run logs, read off what the run already records (config, epoch rows, metrics.json, seeds.json), so
every tracker shows the same numbers as the run folder. Metric keys are `<role>/<name>`: trackers group by role."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgedistill.deploy.fit import fit_sentence, fit_summary, fit_tag
from edgedistill.roles import Role

Value = bool | int | float | str


def config_params(config: dict[str, Any], prefix: str = "") -> dict[str, Value]:
    """The resolved config as flat dotted keys (`teacher.train.epochs`); lists, empty sections and nulls as JSON."""
    out: dict[str, Value] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= config_params(value, f"{name}.")
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def epoch_metrics(role: str, row: dict) -> dict[str, float]:
    """One epoch's curve points: losses, train and validation accuracy, learning rate, seconds."""
    return {f"{role}/{k}": v for k, v in _numbers(row).items() if k != "epoch"}


def format_metrics(prefix: str, fmt: dict, fit: dict | None) -> dict[str, float]:
    """A deployed file: its accuracy through its runtime, bytes, RAM (TFLite Micro's measured arena where there is
    one), host latency, and the device verdict's latency and fit."""
    latency = fmt.get("host_latency") or {}
    checks = (fit or {}).get("checks", {})
    out = {"test_accuracy": fmt.get("test_accuracy"), "file_bytes": fmt.get("file_bytes"),
           "arena_bytes": fmt.get("measured_ram_bytes"), "peak_activation_bytes": fmt.get("peak_activation_bytes"),
           "latency_p50_ms": latency.get("latency_p50_ms"), "latency_p95_ms": latency.get("latency_p95_ms"),
           "ram_bytes": checks.get("ram", {}).get("used"), "device_latency_ms": checks.get("latency_ms", {}).get("used"),
           "fits": None if fit is None or fit["fits"] is None else int(fit["fits"])}
    return {f"{prefix}/{k}": v for k, v in _numbers(out).items()}


def final_metrics(metrics: dict) -> dict[str, float]:
    """Test scores of every role and of every file it was deployed as, and the comparison."""
    out = _numbers(metrics["comparison"])
    for role, record in metrics["models"].items():
        test = record["test"]
        out |= _numbers({f"{role}/test_accuracy": test["accuracy"], f"{role}/test_f1_macro": test["f1_macro"],
                         f"{role}/params": record["params"], f"{role}/size_fp32_bytes": record["size_fp32_bytes"],
                         f"{role}/best_epoch": record.get("train", {}).get("best_epoch")})
        deploy = record.get("deploy") or {}
        for name, fmt in deploy.get("formats", {}).items():
            out |= format_metrics(f"{role}/{name}", fmt, deploy.get("fit", {}).get(name))
    return out


def fit_tags(metrics: dict) -> dict[str, str]:
    """The fit verdict: the KD student's in its preferred format as `fit`, with the sentence the CLI prints, and
    one `fit.<role>.<format>` per deployed file."""
    tags = {}
    for role, record in metrics["models"].items():
        for name, verdict in (record.get("deploy") or {}).get("fit", {}).items():
            tags[f"fit.{role}.{name}"] = "fits" if verdict["fits"] else fit_sentence(verdict)
    kd = metrics["models"][Role.STUDENT_KD.value].get("deploy") or {}
    if kd.get("preferred") in kd.get("fit", {}):
        tags |= {"fit": fit_tag(kd["fit"][kd["preferred"]]["fits"]),
                 "fit.format": kd["preferred"], "fit.summary": fit_summary(metrics)}
    return tags


def deliverable_files(metrics: dict) -> list[str]:
    """The KD student's file in the device's preferred format and the files beside it (a .h/.cc pair)."""
    kd = metrics["models"][Role.STUDENT_KD.value].get("deploy") or {}
    fmt = kd.get("formats", {}).get(kd.get("preferred"))
    return [f"export/{name}" for name in [fmt["file"], *fmt.get("files", [])]] if fmt else []


def artifact_files(metrics: dict, run_dir: Path) -> list[str]:
    """Paths in the run folder to keep beside the tracked run: the deliverable, the reports and metrics.json."""
    names = deliverable_files(metrics) + ["report.html", "report.md", "metrics.json", "config.yaml"]
    return [name for name in names if (run_dir / name).is_file()]


def seeds_metrics(summary: dict) -> dict[str, float]:
    """The --seeds summary: mean and std of every role's test scores, and the KD gain paired by seed."""
    out: dict[str, Any] = {}
    for role, m in summary["models"].items():
        for key, name in (("accuracy", "test_accuracy"), ("f1_macro", "test_f1_macro")):
            out |= {f"{role}/{name}_mean": m[key]["mean"], f"{role}/{name}_std": m[key]["std"]}
    gain = summary["kd_gain_over_scratch"]
    out |= {"kd_gain_over_scratch_mean": gain["mean"], "kd_gain_over_scratch_std": gain["std"],
            "kd_gain_p_value": gain.get("p_value"), "scratch_std": summary["scratch_std"]}
    return _numbers(out)


def seeds_tags(summary: dict) -> dict[str, str]:
    verdict = ("gain beyond the noise" if summary["gain_exceeds_noise"] else
               "loss beyond the noise" if summary["loss_exceeds_noise"] else "inside the noise")
    return {"noise_verdict": verdict, "seeds": ",".join(str(s) for s in summary["seeds"])}
