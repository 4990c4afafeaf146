"""Every edge runtime on a finished run's models, in one process: accuracy through the runtime, file bytes, the RAM
a runtime measures beside the graph-walk estimate, p50/p95 at batch 1 on one thread and throughput at batch 64,
each latency also as a ratio to PyTorch eager and to ONNX Runtime fp32 measured in the same run.

    python benchmarks/runtimes.py RUN_DIR [--roles student_kd teacher] [--formats ...] [--teacher-formats ...]

The files go to RUN_DIR/bench_export; the table to docs/benchmarks.md under `runtimes_<run name>`.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from edgedistill.cli.export import load_run, rebuild
from edgedistill.deploy import estimate_ram
from edgedistill.deploy.backends import parse_format, run_file
from edgedistill.deploy.onnx_export import onnx_file_bytes
from edgedistill.deploy.profile import count_macs, measure_latency
from edgedistill.errors import first_line
from record import header, replace_section

FORMATS = [f"{r}-{d}" for r in ("onnxruntime", "executorch", "litert", "tflm") for d in ("fp32", "int8")]
RUNS = 300


def eager(model: torch.nn.Module, input_shape: tuple[int, ...]) -> dict:
    """PyTorch eager on one thread, timed the way the runtimes are."""
    torch.set_num_threads(1)

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return measure_latency(forward, input_shape, 1, runs=RUNS)


def measure_format(fmt: str, model, data, out_dir: Path, role: str, calibration_x: np.ndarray) -> dict:
    backend, dtype = parse_format(fmt)
    path = out_dir / f"{role}_{backend.name}_{dtype}{backend.suffix}"
    t0 = time.perf_counter()
    backend.export(model, data.input_shape, calibration_x, path, dtype)
    size = onnx_file_bytes(path) if backend.suffix == ".onnx" else path.stat().st_size
    row = {"format": fmt, "export_s": time.perf_counter() - t0, "file_bytes": size}
    if backend.extras is not None:
        row |= backend.extras(path, dtype)
    session = backend.open(path, 1)
    logits = run_file(backend, path, session, data.x_test, os.cpu_count() or 1)
    row["test_accuracy"] = float(np.mean(logits.argmax(1) == data.y_test))
    row["latency"] = measure_latency(session, data.input_shape, 1, runs=RUNS if backend.speed_is_meaningful else 30,
                                     throughput_batch=64 if backend.speed_is_meaningful else 8)
    row["meaningful"] = backend.speed_is_meaningful
    return row


def table(rows: list[dict], base: dict, torch_acc: float, estimate: dict) -> str:
    ort = next((r for r in rows if r["format"] == "onnxruntime-fp32"), None)
    lines = ["| runtime-dtype | test acc | vs PyTorch fp32 | file bytes | RAM measured | RAM estimate | p50 / p95 ms (1 thread) "
             "| throughput | vs eager | vs ORT fp32 |", "|---|---|---|---|---|---|---|---|---|---|"]
    b = base["latency_p50_ms"]
    lines.append(f"| PyTorch eager fp32 | {100 * torch_acc:.2f}% | - | - | - | {estimate['fp32']:,} B | "
                 f"{b:.3f} / {base['latency_p95_ms']:.3f} | {base['throughput_per_s']:,.0f}/s b64 | 1.0x | "
                 f"{ort['latency']['latency_p50_ms'] / b:.2f}x |" if ort else "")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['format']} | failed: {r['error']} | | | | | | | | |")
            continue
        lat = r["latency"]
        p50 = lat["latency_p50_ms"]
        speed = (f"{b / p50:.1f}x", f"{ort['latency']['latency_p50_ms'] / p50:.1f}x" if ort else "-") \
            if r["meaningful"] else ("reference kernels", "-")
        ram = f"{r['measured_ram_bytes']:,} B arena" if "measured_ram_bytes" in r else "-"
        lines.append(f"| {r['format']} | {100 * r['test_accuracy']:.2f}% | {100 * (r['test_accuracy'] - torch_acc):+.2f} pts | "
                     f"{r['file_bytes']:,} | {ram} | {estimate[r['format'].rpartition('-')[2]]:,} B | "
                     f"{p50:.3f} / {lat['latency_p95_ms']:.3f} | {lat['throughput_per_s']:,.0f}/s b{lat['throughput_batch']} | "
                     f"{speed[0]} | {speed[1]} |")
    return "\n".join(line for line in lines if line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--roles", nargs="+", default=["student_kd", "teacher"])
    ap.add_argument("--formats", nargs="+", default=FORMATS)
    ap.add_argument("--teacher-formats", nargs="+", default=[f for f in FORMATS if not f.startswith("tflm")],
                    help="the teacher is no microcontroller model; TFLM's reference kernels take minutes on it")
    ap.add_argument("--key", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    run_dir = Path(args.run_dir)
    metrics, cfg, device, data = load_run(run_dir)
    out_dir = run_dir / "bench_export"
    out_dir.mkdir(exist_ok=True)
    sections = []
    for role in args.roles:
        model = rebuild(cfg, role, data, run_dir)
        torch_acc = metrics["models"][role]["test"]["accuracy"]
        base = eager(model, data.input_shape)
        estimate, _ = estimate_ram(model, data.input_shape)
        rows = []
        for fmt in args.teacher_formats if role == "teacher" else args.formats:
            try:
                rows.append(measure_format(fmt, model, data, out_dir, role, data.x_train[:cfg.deploy.calibration_samples]))
            except Exception as exc:  # noqa: BLE001 - a converter that fails is a row, with its reason
                rows.append({"format": fmt, "error": first_line(exc)[:160]})
            print(rows[-1], flush=True)
        m = metrics["models"][role]
        macs = count_macs(model, data.input_shape)
        sections.append(f"#### {role}: {m['model']} {m['args']}, {m['params']:,} params, {macs / 1e6:.2f}M MACs\n\n"
                        + table(rows, base, torch_acc, estimate))
    key = args.key or f"runtimes_{metrics['name']}"
    body = (f"### Edge runtimes: {metrics['name']} ({metrics['dataset']['name']}, {len(data.y_test)} test samples)\n\n"
            + header(time.perf_counter() - t0)
            + f"- run folder measured: `{run_dir}` (trained {metrics['created']}); the config's epochs are in its "
              "config.yaml\n- every file is exported from the run's checkpoint by the runtime's own converter and "
              "scored on the whole test split through the runtime itself (TFLite Micro in 2 processes)\n"
            + "- latency: batch 1, one thread, p50/p95 of 300 runs (TFLite Micro: 30 runs of its reference kernels, "
              "no device figure); throughput at batch 64 (runtimes whose file takes batch 1 loop over the batch)\n"
            + "- RAM estimate: peak live activations along the ONNX graph at batch 1; measured: the smallest arena "
              "TFLite Micro's interpreter runs the file in\n\n" + "\n\n".join(sections))
    replace_section(key, body)
    print(body)


if __name__ == "__main__":
    main()
