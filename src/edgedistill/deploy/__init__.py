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
from edgedistill.deploy.quantize import quantize_int8, quantized_bits, quantized_input_bits
from edgedistill.data import DataSplits
from edgedistill.errors import UserError
from edgedistill.models import count_params

__all__ = ["DeviceProfile", "ELEMENT_BYTES", "get_device", "load_catalog", "check_input_bits", "deploy_model",
           "early_fit_check", "preferred_dtype"]

# Bytes a weight takes in each deployable precision; int8 activations are one byte in an integer-only runtime.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
PREFERENCE = ("int8", "fp32")  # the artefacts this step makes, smallest first


def preferred_dtype(device: DeviceProfile, available: tuple[str, ...] | list[str] = PREFERENCE) -> str:
    """The smallest artefact the device can run; fp32 when it runs none of them (its fit check then says why)."""
    return next((d for d in PREFERENCE if d in available and d in device.dtypes), "fp32")


def _footprint(path: Path, dtype: str, fp32_path: Path) -> dict:
    """File bytes of this artefact; peak activations computed on the fp32 graph at this dtype's element size (at
    two bytes for the tensors the int8 graph quantizes to 16 bits, as read off the graph itself)."""
    wide = {name: 2 for name, bits in quantized_bits(path).items() if bits == 16} if dtype == "int8" else {}
    record = {"file": path.name, "file_bytes": onnx_file_bytes(path),
              "peak_activation_bytes": peak_activation_bytes(fp32_path, ELEMENT_BYTES[dtype], tensor_bytes=wide or None)}
    if dtype == "int8" and quantized_input_bits(path) == 16:
        record["input_bits"] = 16
    return record


def check_input_bits(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                     input_bits: int) -> None:
    """Refuse a 16-bit input this model would never quantize, whatever the device runs, before any training."""
    if input_bits == 8:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "probe_fp32.onnx")
        quantize_int8(fp32, calibration_x[:32], Path(tmp) / "probe_int8.onnx", input_bits=input_bits)


def early_fit_check(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                    device: DeviceProfile, input_bits: int = 8) -> dict:
    """Export and quantize the (untrained) student before training: its size and RAM do not depend on training."""
    dtype = preferred_dtype(device)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "student_fp32.onnx")
        path = (quantize_int8(fp32, calibration_x[:32], Path(tmp) / "student_int8.onnx", input_bits=input_bits)
                if dtype == "int8" else fp32)
        fp = _footprint(path, dtype, fp32)
        return fit_check(device, dtype, fp["file_bytes"], fp["peak_activation_bytes"],
                         count_params(model) * ELEMENT_BYTES[dtype], count_macs(model, input_shape))


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    logits = ort_logits(path, x)
    return float(np.mean(logits.argmax(1) == y)), logits


def deploy_model(model: nn.Module, role: str, input_shape: tuple[int, ...], export_dir: Path, data: DataSplits,
                 torch_test_logits: np.ndarray, calibration_x: np.ndarray, device: DeviceProfile,
                 latency_runs: int = 100, quantize: bool = True, input_bits: int = 8) -> dict:
    """Export fp32 (checked against PyTorch), quantize to int8, score both through ONNX Runtime, profile, fit.

    Validation accuracy through ONNX Runtime is recorded too: decisions (such as whether to run QAT) use it,
    never the test accuracy.
    """
    out: dict = {"macs": count_macs(model, input_shape), "formats": {}, "fit": {}}
    params = count_params(model)
    fp32 = export_onnx(model, input_shape, export_dir / f"{role}_fp32.onnx")
    artefacts = {"fp32": fp32}
    if quantize:
        int8_path = export_dir / f"{role}_int8.onnx"
        try:
            artefacts["int8"] = quantize_int8(fp32, calibration_x, int8_path, input_bits=input_bits)
        except UserError as exc:  # a 16-bit input this model (a GRU teacher, say) never quantizes: it stays float
            artefacts["int8"] = quantize_int8(fp32, calibration_x, int8_path, input_bits=8)
            out["input_bits_refused"] = str(exc)
    for dtype, path in artefacts.items():
        record = _footprint(path, dtype, fp32)
        test_acc, logits = ort_accuracy(path, data.x_test, data.y_test)
        record["test_accuracy_onnxruntime"] = test_acc
        record["val_accuracy_onnxruntime"] = ort_accuracy(path, data.x_val, data.y_val)[0]
        if dtype == "fp32":
            record |= logit_agreement(logits, torch_test_logits)
        record["host_latency"] = measure_latency(path, input_shape, device.cores, runs=latency_runs)
        out["formats"][dtype] = record
        out["fit"][dtype] = fit_check(device, dtype, record["file_bytes"], record["peak_activation_bytes"],
                                      params * ELEMENT_BYTES[dtype], out["macs"],
                                      record["host_latency"]["latency_p50_ms"])
    out["preferred_dtype"] = preferred_dtype(device, tuple(artefacts))
    return out
