"""LiteRT (TensorFlow Lite): litert-torch converts the torch graph, PT2E-quantized for int8, to a .tflite whose
int8 file is full-integer (int8 input and output); LiteRT's interpreter with XNNPACK runs it here."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.deploy.backends.base import Backend, dequantize, eval_model, quantize_input
from edgedistill.deploy.backends.pt2e import quantized_graph
from edgedistill.quiet import third_party_output


def export(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
           input_bits: int = 8) -> Path:
    model = eval_model(model)
    example = torch.zeros(1, *input_shape)
    with third_party_output():  # its imports print about optional CUDA kernels, so they go to the library log too
        import litert_torch

        if dtype == "int8":
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig

            quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            graph = quantized_graph(model, example, calibration_x, quantizer, fold_weights=False)
            converted = litert_torch.convert(graph, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        else:
            converted = litert_torch.convert(model, (example,))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        converted.export(str(tmp))
    os.replace(tmp, path)
    return path


class LiteRtSession:
    """LiteRT's interpreter (XNNPACK delegate) at batch 1, the shape the file was converted at."""

    max_batch = 1

    def __init__(self, path: Path, threads: int):
        with third_party_output():
            from ai_edge_litert.interpreter import Interpreter

            self._it = Interpreter(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        self._in, self._out = self._it.get_input_details()[0], self._it.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(len(x)):
            self._it.set_tensor(self._in["index"], to_input(x[i:i + 1], self._in))
            self._it.invoke()
            rows.append(from_output(self._it.get_tensor(self._out["index"]), self._out))
        return np.concatenate(rows)


def to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    return quantize_input(x, scale, zero, detail["dtype"])


def from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return dequantize(y, scale, zero)


BACKEND = Backend(name="litert", suffix=".tflite", modules=("litert_torch", "ai_edge_litert"),
                  pip="pip install 'edgedistill[litert]'", export=export, open=LiteRtSession,
                  title="LiteRT", note="LiteRT .tflite (Android, Raspberry Pi, Coral); int8 is full-integer with int8 I/O")
