"""ONNX Runtime: fp32 ONNX from torch's exporter and int8 QDQ from ONNX Runtime's static quantizer. The QDQ file is
also what TensorRT (Jetson) builds an int8 engine from."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgedistill.deploy.backends.base import Backend
from edgedistill.deploy.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, onnx_file_bytes, ort_session
from edgedistill.deploy.profile import graph_peak
from edgedistill.deploy.quantize import quantize_int8, quantized_bits, quantized_input_bits
from edgedistill.errors import UserError


def export(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
           input_bits: int = 8) -> Path:
    if dtype == "fp32":
        return export_onnx(model, input_shape, path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "fp32.onnx")
        return quantize_int8(fp32, calibration_x, path, input_bits=input_bits)


def write(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
          input_bits: int = 8) -> dict:
    """export; a model (a GRU teacher, say) that never quantizes its input at 16 bits stays at 8, with a note."""
    if dtype != "int8" or input_bits != 16:
        export(model, input_shape, calibration_x, path, dtype, input_bits=input_bits)
        return {}
    try:
        export(model, input_shape, calibration_x, path, dtype, input_bits=16)
    except UserError as exc:
        export(model, input_shape, calibration_x, path, dtype, input_bits=8)
        return {"input_bits_refused": str(exc)}
    return {}


def ram_peak(onnx_fp32: bytes, path: Path, dtype: str) -> int:
    """The default estimate (the fp32 graph's peak live activations at the dtype's element size), with the tensors
    an int8 QDQ graph quantizes to 16 bits at two bytes."""
    if dtype != "int8":
        return graph_peak(onnx_fp32, 4)
    wide = {name: 2 for name, bits in quantized_bits(path).items() if bits == 16}
    return graph_peak(onnx_fp32, 1, tensor_bytes=wide or None)


def extras(path: Path, dtype: str) -> dict:
    """A 16-bit input is said in the record (the int8 file's layers reading it run 16x8)."""
    return {"input_bits": 16} if dtype == "int8" and quantized_input_bits(path) == 16 else {}


class OrtSession:
    max_batch = None

    def __init__(self, path: Path, threads: int):
        self._sess = ort_session(path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]


BACKEND = Backend(name="onnxruntime", suffix=".onnx", modules=("onnxruntime",), pip="pip install onnxruntime",
                  export=export, open=OrtSession, input_bits=(8, 16), write=write, file_bytes=onnx_file_bytes,
                  ram_peak=ram_peak, extras=extras,
                  title="ONNX Runtime", note="QDQ ONNX: ONNX Runtime runs it, and TensorRT builds an int8 engine from it")
