"""The default RAM estimate, for a backend without its own `ram_graph`/`ram_peak` hooks: peak live activations along
the model's fp32 ONNX graph, exported once per model and read per file at the file's element size."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch.nn as nn

from edgedistill.deploy.backends.base import ACTIVATION_BYTES, Backend
from edgedistill.deploy.onnx_export import export_onnx
from edgedistill.deploy.profile import graph_peak, peak_activation_bytes
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
    from edgedistill.deploy.backends.onnxruntime import BACKEND  # its exporter made the graph: say what stopped it

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return export_onnx(model, input_shape, Path(tmp) / "estimate.onnx").read_bytes()
    except (UserError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - say what in the model stopped the export
        raise explain(exc, model, input_shape, calibration_x, BACKEND, "the fp32 ONNX graph of the RAM estimate",
                      "fp32", 8) from exc


def default_ram_peak(onnx_fp32: bytes, path: Path, dtype: str) -> int:
    """Peak live activations along the fp32 graph at the dtype's element size (one byte: integer-only int8)."""
    return graph_peak(onnx_fp32, ACTIVATION_BYTES[dtype])


def ram_hooks(backend: Backend) -> tuple[Callable, Callable]:
    """The backend's (ram_graph, ram_peak) hooks, each falling back to the ONNX estimate."""
    return backend.ram_graph or onnx_fp32_graph, backend.ram_peak or default_ram_peak
