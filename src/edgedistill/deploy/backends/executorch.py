"""ExecuTorch with the XNNPACK delegate (phones, Linux boards): torch.export, PT2E int8 with the XNNPACK quantizer,
lowering to XNNPACK, a .pte file, run here by ExecuTorch's own runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.atomic import atomic_write_bytes
from edgedistill.deploy.backends.base import Backend, eval_model
from edgedistill.deploy.backends.pt2e import quantized_graph
from edgedistill.models.evaluate import model_input
from edgedistill.quiet import third_party_output


def export(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
           input_bits: int = 8) -> Path:
    model = eval_model(model)
    example = torch.zeros(1, *input_shape)
    with third_party_output():  # its imports print about optional kernels, so they go to the library log too
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                             get_symmetric_quantization_config)
        from executorch.exir import to_edge_transform_and_lower

        if dtype == "int8":
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            model = quantized_graph(model, example, calibration_x, quantizer, fold_weights=True)
        program = to_edge_transform_and_lower(torch.export.export(model, (example,)),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, program.buffer)
    return path


class ExecuTorchSession:
    """The .pte's forward method; XNNPACK's thread pool is process-wide, so it is set to `threads` here."""

    max_batch = 1

    def __init__(self, path: Path, threads: int):
        with third_party_output():
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime

            _unsafe_reset_threadpool(threads)
            self._method = Runtime.get().load_program(str(path)).load_method("forward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._method.execute([model_input(x[i:i + 1])])[0].numpy()
                               for i in range(len(x))])


BACKEND = Backend(name="executorch", suffix=".pte", modules=("executorch", "torchao"),
                  pip="pip install 'edgedistill[executorch]'", export=export, open=ExecuTorchSession,
                  title="ExecuTorch", note="ExecuTorch .pte lowered to XNNPACK (Android, iOS, Linux on Arm and x86)")
