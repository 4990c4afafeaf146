"""ONNX Runtime: fp32 ONNX from torch's exporter and int8 QDQ from ONNX Runtime's static quantizer. The QDQ file is
also what TensorRT (Jetson) builds an int8 engine from."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgedistill.deploy.backends import Backend
from edgedistill.deploy.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, ort_session
from edgedistill.deploy.quantize import quantize_int8


def export(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
           input_bits: int = 8) -> Path:
    if dtype == "fp32":
        return export_onnx(model, input_shape, path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "fp32.onnx")
        return quantize_int8(fp32, calibration_x, path, input_bits=input_bits)


class OrtSession:
    max_batch = None

    def __init__(self, path: Path, threads: int):
        self._sess = ort_session(path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]


BACKEND = Backend(name="onnxruntime", suffix=".onnx", modules=("onnxruntime",), pip="pip install onnxruntime",
                  export=export, open=OrtSession, input_bits=(8, 16),
                  title="ONNX Runtime", note="QDQ ONNX: ONNX Runtime runs it, and TensorRT builds an int8 engine from it")
