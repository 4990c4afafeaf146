"""Edge deployment: export to ONNX, int8 quantization, measured footprint, and the fit check against a device.

Every figure here is measured on the real artefact: file bytes on disk, ONNX Runtime accuracy and latency.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgedistill.deploy.devices import DeviceProfile, get_device, load_catalog
from edgedistill.deploy.fit import fit_check
from edgedistill.deploy.onnx_export import export_onnx, logit_agreement, onnx_file_bytes, ort_logits
from edgedistill.deploy.profile import count_macs, measure_latency, peak_activation_bytes
from edgedistill.deploy.quantize import quantize_int8
from edgedistill.evaluate import classification_metrics

__all__ = ["DeviceProfile", "get_device", "load_catalog", "deploy_model", "early_fit_check", "preferred_dtype"]

# Bytes a weight takes in each deployable precision; int8 activations are one byte in an integer-only runtime.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def preferred_dtype(device: DeviceProfile) -> str:
    return "int8" if "int8" in device.dtypes else device.dtypes[0]


def _footprint(path: Path, dtype: str, input_shape: tuple[int, ...], fp32_path: Path) -> dict:
    """File bytes of this artefact; peak activations computed on the fp32 graph at this dtype's element size."""
    return {"file": path.name, "file_bytes": onnx_file_bytes(path),
            "peak_activation_bytes": peak_activation_bytes(fp32_path, ELEMENT_BYTES[dtype])}


def early_fit_check(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                    device: DeviceProfile) -> dict:
    """Export and quantize the (untrained) student before training: its size and RAM do not depend on training."""
    dtype = preferred_dtype(device)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "student_fp32.onnx")
        path = quantize_int8(fp32, calibration_x[:32], Path(tmp) / "student_int8.onnx") if dtype == "int8" else fp32
        fp = _footprint(path, dtype, input_shape, fp32)
        macs = count_macs(model, input_shape)
        weight_bytes = sum(p.numel() for p in model.parameters()) * ELEMENT_BYTES.get(dtype, 4)
        return fit_check(device, dtype, fp["file_bytes"], fp["peak_activation_bytes"], weight_bytes, macs)


def deploy_model(model: nn.Module, role: str, input_shape: tuple[int, ...], export_dir: Path,
                 x_test: np.ndarray, y_test: np.ndarray, class_names: list[str], torch_test_logits: np.ndarray,
                 calibration_x: np.ndarray, device: DeviceProfile, latency_runs: int = 100,
                 quantize: bool = True) -> dict:
    """Export fp32 (checked against PyTorch), quantize to int8, score both through ONNX Runtime, profile, fit."""
    out: dict = {"macs": count_macs(model, input_shape), "formats": {}, "fit": {}}
    params = sum(p.numel() for p in model.parameters())
    fp32 = export_onnx(model, input_shape, export_dir / f"{role}_fp32.onnx")
    artefacts = {"fp32": fp32}
    if quantize:
        artefacts["int8"] = quantize_int8(fp32, calibration_x, export_dir / f"{role}_int8.onnx")
    for dtype, path in artefacts.items():
        logits = ort_logits(path, x_test)
        record = _footprint(path, dtype, input_shape, fp32)
        record["test_accuracy_onnxruntime"] = classification_metrics(y_test, logits.argmax(1), class_names)["accuracy"]
        if dtype == "fp32":
            record |= logit_agreement(logits, torch_test_logits)
        record["host_latency"] = measure_latency(path, input_shape, device.cores, runs=latency_runs)
        out["formats"][dtype] = record
        out["fit"][dtype] = fit_check(device, dtype, record["file_bytes"], record["peak_activation_bytes"],
                                      params * ELEMENT_BYTES[dtype], out["macs"],
                                      record["host_latency"]["latency_p50_ms"])
    return out
