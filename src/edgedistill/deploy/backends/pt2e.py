"""PT2E quantization, shared by the runtimes that take a torch.export graph (ExecuTorch, LiteRT): per-channel
symmetric int8 weights, per-tensor int8 activations calibrated on training samples, the input quantized too."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgedistill.models.evaluate import model_input


def quantized_graph(model: nn.Module, example: torch.Tensor, calibration_x: np.ndarray, quantizer,
                    fold_weights: bool) -> nn.Module:
    """torch.export, insert observers, calibrate batch by batch, convert to quantize/dequantize pairs (weights
    stored already quantized with fold_weights, as ExecuTorch's lowering wants; as float for litert-torch)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    batch = example.shape[0]
    with torch.no_grad():
        for i in range(0, len(calibration_x) - batch + 1, batch):
            prepared(model_input(calibration_x[i:i + batch], dtype=torch.float32))
    return convert_pt2e(prepared, fold_quantize=fold_weights)
