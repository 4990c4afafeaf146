"""A backend of a user's own, from outside the package: `deploy.formats: ["toy_backend:BACKEND-fp32"]`.

It writes the model as a torch.export program (.pt2) and runs it through torch.export.load. Its runtime keeps every
activation (it frees nothing), so its RAM estimate is the input plus every layer's output, seen by forward hooks,
not the peak along an ONNX graph: a figure the deploy core can only have got through the backend's hooks. fp32
only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.deploy.backends import Backend


def export(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path, dtype: str,
           input_bits: int = 8) -> Path:
    if dtype != "fp32":
        raise RuntimeError(f"the toy backend writes fp32 files only, not {dtype}")
    program = torch.export.export(model.cpu().eval(), (torch.zeros(2, *input_shape),),  # 1 would be specialised
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


class ToySession:
    max_batch = None

    def __init__(self, path: Path, threads: int):
        self._module = torch.export.load(str(path)).module()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._module(torch.as_tensor(x, dtype=torch.float32)).numpy()


def activation_bytes(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray) -> list[int]:
    """fp32 bytes of the input and of each leaf layer's output for one sample, in the order the layers run."""
    sizes: list[int] = [4 * int(np.prod(input_shape))]

    def hook(_module, args, out):
        sizes.append(4 * out[:1].numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model.cpu().eval()(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return sizes


def kept_bytes(sizes: list[int], path: Path, dtype: str) -> int:
    return sum(sizes)


BACKEND = Backend(name="toy", suffix=".pt2", modules=("torch",), pip="pip install torch", export=export,
                  open=ToySession, ram_graph=activation_bytes, ram_peak=kept_bytes, title="the toy runtime",
                  note="a torch.export program, registered from the tests folder")
