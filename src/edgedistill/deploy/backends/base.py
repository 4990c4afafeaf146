"""What a backend is: the `Backend` record of one runtime with its hooks, the `Session` it opens, and the helpers
every backend shares. Nothing here knows a particular runtime; backends/__init__.py holds the registry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch.nn as nn


DTYPES = ("fp32", "int8")
ACTIVATION_BYTES = {"fp32": 4, "int8": 1}  # an int8 runtime is integer-only: one byte per activation


class Session(Protocol):
    """A loaded file: float32 inputs in, float32 logits out (a quantized file's I/O is (de)quantized inside)."""

    max_batch: int | None  # None: any batch size

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class RuntimeRefused(RuntimeError):
    """A runtime would not load or run a file; `operators` are those it named as missing, when it named any."""

    def __init__(self, message: str, operators: list[str] | None = None):
        super().__init__(message)
        self.operators = list(operators or [])


def file_size(path: Path) -> int:
    return path.stat().st_size


def no_companions(path: Path) -> list[Path]:
    return []


@dataclass(frozen=True)
class NpuCompiler:
    """A compiler that turns one of a backend's files into the file an NPU runs (Vela, for an Ethos-U)."""

    title: str  # "Arm's Vela compiler"
    name: str  # "Vela"
    npu: str  # the NPUs it compiles for: "an Ethos-U NPU"
    dtype: str  # the backend's dtype it compiles from
    modules: tuple[str, ...]
    pip: str
    check: Callable[[str, Any], None]  # (device name, NpuConfig): refuses an accelerator it does not know
    compile: Callable[[Path, Any, Path], dict]  # (file, NpuConfig, out_dir) -> the record's "npu" and deliverable


@dataclass(frozen=True)
class Backend:
    """One runtime: how to write its file and how to run it here, and the hooks the deploy core calls on it (each
    with a default that suits a runtime without the feature)."""

    name: str
    suffix: str
    modules: tuple[str, ...]  # what must import for it to work
    pip: str  # how to install what it needs
    export: Callable[..., Path]  # (model, input_shape, calibration_x, path, dtype, input_bits=8) -> path
    open: Callable[[Path, int], Session]  # (path, threads) -> session
    input_bits: tuple[int, ...] = (8,)
    speed_is_meaningful: bool = True  # False where the host runs reference kernels, not the device's
    note: str = ""
    extras: Callable[[Path, str], dict] | None = None  # more files and measurements beside the file (tflm)
    title: str = ""  # the runtime's name in messages: "TensorFlow Lite Micro"
    write: Callable[..., dict] | None = None  # export that returns notes (an input width it fell back from)
    file_bytes: Callable[[Path], int] = file_size  # the file's size as the device stores it
    # the RAM estimate: a graph made once per model, read per file; None is the deploy core's default, peak live
    # activations along the model's fp32 ONNX graph (deploy/estimate.py)
    ram_graph: Callable[[nn.Module, tuple[int, ...], np.ndarray], Any] | None = None
    ram_peak: Callable[[Any, Path, str], int] | None = None  # (ram_graph's result, file, dtype) -> bytes
    npu: NpuCompiler | None = None  # compiles its `npu.dtype` file for a device with an NPU
    companions: Callable[[Path], list[Path]] = no_companions  # files written beside it, removed when it fails

    def make_file(self, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path,
                  dtype: str, input_bits: int) -> dict:
        """Write the file; returns notes on how it was made."""
        if self.write is not None:
            return self.write(model, input_shape, calibration_x, path, dtype, input_bits)
        self.export(model, input_shape, calibration_x, path, dtype, input_bits=input_bits)
        return {}


def run_batches(session: Session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for every row of x, in batches the session can take."""
    step = min(batch_size, session.max_batch or batch_size)
    return np.concatenate([session(x[i:i + step].astype(np.float32)) for i in range(0, len(x), step)])


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: type) -> np.ndarray:
    """float to the integer grid a quantized file's input is on (round half to even, as the runtimes do)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def eval_model(model: nn.Module) -> nn.Module:
    return model.cpu().eval()
