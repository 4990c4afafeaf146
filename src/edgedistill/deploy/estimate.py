"""The default RAM estimate of every backend: peak live activations along the model's fp32 ONNX graph, exported
once per model (`Backend.ram_graph`) and read per file (`Backend.ram_peak`)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgedistill.deploy.onnx_export import export_onnx
from edgedistill.deploy.profile import peak_activation_bytes
from edgedistill.deploy.reach import explain
from edgedistill.errors import UserError


def estimate_ram(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict[str, int], bytes]:
    """Graph-walk peak activations on the fp32 ONNX graph at 4 and 1 bytes per element, and that graph."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "estimate.onnx")
        return {"fp32": peak_activation_bytes(fp32, 4), "int8": peak_activation_bytes(fp32, 1)}, fp32.read_bytes()


def onnx_fp32_graph(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray) -> bytes:
    """The fp32 ONNX graph every default RAM estimate reads: a model torch.onnx cannot export is refused naming the
    operator or line, like a runtime's refusal."""
    from edgedistill.deploy.backends.onnxruntime import BACKEND

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return export_onnx(model, input_shape, Path(tmp) / "estimate.onnx").read_bytes()
    except (UserError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - say what in the model stopped the export
        raise explain(exc, model, input_shape, calibration_x, BACKEND, "the fp32 ONNX graph of the RAM estimate",
                      "fp32", 8) from exc


def graph_peak(onnx_fp32: bytes, bytes_per_element: int, tensor_bytes: dict[str, int] | None = None) -> int:
    """peak_activation_bytes of a graph held in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(onnx_fp32)
        return peak_activation_bytes(fp32, bytes_per_element, tensor_bytes=tensor_bytes)
