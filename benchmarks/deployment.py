"""Deployment table from a finished run (e.g. configs/fashion_mnist_mcu.yaml): accuracy through ONNX Runtime, file
bytes, MACs, peak RAM, 1-thread latency, and the fit verdict on the microcontroller and Raspberry Pi profiles.
Also times the KD student under ONNX Runtime against PyTorch eager, both at batch 1 on one thread, in one run.

    python benchmarks/deployment.py RUN_DIR
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgedistill.checkpoint import load_weights, read_checkpoint
from edgedistill.deploy import ELEMENT_BYTES, get_device
from edgedistill.deploy.fit import fit_check
from edgedistill.deploy.profile import measure_latency
from edgedistill.models import create_model
from record import header, replace_section

ROWS = [("teacher", "fp32"), ("student_kd", "fp32"), ("student_kd", "int8"), ("student_pruned", "int8"),
        ("student_pruned", "fp32"), ("student_scratch", "int8")]


def eager_latency_ms(run_dir: Path, role: str, input_shape: tuple[int, ...], runs: int = 300) -> float:
    ckpt = read_checkpoint(run_dir / f"{role}.pt")
    model = create_model(ckpt["model"], input_shape, ckpt["num_classes"], ckpt["args"]).eval()
    load_weights(model, ckpt, run_dir / f"{role}.pt")
    x = torch.zeros(1, *input_shape)
    times = []
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50))


def verdict(device_name: str, dtype: str, fmt: dict, macs: int, params: int) -> str:
    device = get_device(device_name)
    v = fit_check(device, dtype, fmt["file_bytes"], fmt["peak_activation_bytes"], params * ELEMENT_BYTES[dtype], macs)
    c = v["checks"]
    if v["fits"]:
        return f"fits (flash {c['flash']['margin_pct']:.0f}% / RAM {c['ram']['margin_pct']:.0f}% free)"
    return "no: " + "; ".join(v["overflows"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    args = ap.parse_args()
    t0 = time.perf_counter()
    run_dir = Path(args.run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shape = tuple(metrics["dataset"]["input_shape"])
    torch.set_num_threads(1)
    rows = ["| model | format | ORT test acc | file bytes | MACs | peak act. RAM | p50 1 thread (host) | "
            "mcu | raspberry_pi_4 |", "|---|---|---|---|---|---|---|---|---|"]
    for role, dtype in ROWS:
        m = metrics["models"].get(role)
        if not m or dtype not in m.get("deploy", {}).get("formats", {}):
            continue
        fmt = m["deploy"]["formats"][dtype]
        lat = measure_latency(run_dir / "export" / fmt["file"], shape, threads=1, runs=300)
        rows.append(f"| {role} | {dtype} | {100 * fmt['test_accuracy_onnxruntime']:.2f}% | {fmt['file_bytes']:,} | "
                    f"{m['deploy']['macs'] / 1e6:.2f}M | {fmt['peak_activation_bytes']:,} B | "
                    f"{lat['latency_p50_ms']:.3f} ms | {verdict('mcu', dtype, fmt, m['deploy']['macs'], m['params'])} | "
                    f"{verdict('raspberry_pi_4', dtype, fmt, m['deploy']['macs'], m['params'])} |")
    kd_fp32 = run_dir / "export" / "student_kd_fp32.onnx"
    ort_ms = measure_latency(kd_fp32, shape, threads=1, runs=300)["latency_p50_ms"]
    eager_ms = eager_latency_ms(run_dir, "student_kd", shape)
    wall = time.perf_counter() - t0
    body = (f"### Deployment: {metrics['name']} (device {metrics['device']['name']})\n\n{header(wall)}"
            f"- run folder measured: `{run_dir}` (trained {metrics['created']})\n\n" + "\n".join(rows) +
            f"\n\nKD student fp32 at batch 1 on one thread: ONNX Runtime p50 {ort_ms:.3f} ms, PyTorch eager p50 "
            f"{eager_ms:.3f} ms: ONNX Runtime is {eager_ms / ort_ms:.1f}x faster (same process, same machine).\n"
            "On-device latency is not measured here; the fit columns judge flash and RAM (and latency where the "
            "profile has a budget, estimated from MACs).\n")
    replace_section(f"deployment_{metrics['name']}", body)
    print(body)


if __name__ == "__main__":
    main()
