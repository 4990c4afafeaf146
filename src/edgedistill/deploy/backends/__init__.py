"""Edge runtimes behind one interface: each exports fp32 and int8 files and runs them on this host through its own
runtime, so accuracy, agreement with PyTorch and latency are measured on the very file a device loads.

A format is `runtime-dtype` (`tflm-int8`, `executorch-fp32`, `onnxruntime-int8`). The device profile names the
formats it takes; `deploy.formats` overrides them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch.nn as nn

from edgedistill.data.rows import take_rows
from edgedistill.errors import UserError
from edgedistill.quiet import forking  # noqa: F401  (the TFLM backend forks its probes with it)

DTYPES = ("fp32", "int8")


class Session(Protocol):
    """A loaded file: float32 inputs in, float32 logits out (a quantized file's I/O is (de)quantized inside)."""

    max_batch: int | None  # None: any batch size

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class RuntimeRefused(RuntimeError):
    """A runtime would not load or run a file; `operators` are those it named as missing, when it named any."""

    def __init__(self, message: str, operators: list[str] | None = None):
        super().__init__(message)
        self.operators = list(operators or [])


@dataclass(frozen=True)
class Backend:
    """One runtime: how to write its file and how to run it here."""

    name: str
    suffix: str
    modules: tuple[str, ...]  # what must import for it to work
    pip: str  # how to install what it needs
    export: Callable[..., Path]  # (model, input_shape, calibration_x, path, dtype) -> path
    open: Callable[[Path, int], Session]  # (path, threads) -> session
    input_bits: tuple[int, ...] = (8,)
    speed_is_meaningful: bool = True  # False where the host runs reference kernels, not the device's
    note: str = ""
    extras: Callable[[Path, str], dict] | None = None  # more files and measurements beside the file (tflm)
    title: str = ""  # the runtime's name in messages: "TensorFlow Lite Micro"


def _registry() -> dict[str, Backend]:
    from edgedistill.deploy.backends import executorch, litert, onnxruntime, tflm

    return {b.name: b for b in (onnxruntime.BACKEND, executorch.BACKEND, litert.BACKEND, tflm.BACKEND)}


def backends() -> dict[str, Backend]:
    return _registry()


def parse_format(fmt: str, field_name: str = "deploy.formats") -> tuple[Backend, str]:
    """`runtime-dtype` to its backend and dtype, or one line naming what is known."""
    runtime, _, dtype = fmt.rpartition("-")
    known = backends()
    if runtime not in known or dtype not in DTYPES:
        choices = ", ".join(f"{r}-{d}" for r in known for d in DTYPES)
        raise UserError(f"{field_name}: unknown format {fmt!r}; choose from {choices}")
    return known[runtime], dtype


def missing_runtime(backend: Backend) -> str | None:
    """The pip command that would make this backend work here, or None when it already does."""
    return None if all(_importable(m) for m in backend.modules) else backend.pip


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_formats(formats: list[str], input_bits: int, field_name: str = "deploy.formats") -> None:
    """Every format is known, installed and able to take the configured input width: checked before training."""
    for fmt in formats:
        backend, dtype = parse_format(fmt, field_name)
        if (pip := missing_runtime(backend)) is not None:
            raise UserError(f"{field_name}: format {fmt!r} needs the {backend.name} runtime, which is not "
                            f"installed; run `{pip}` or choose other formats")
        if dtype == "int8" and input_bits not in backend.input_bits:
            raise UserError(f"deploy.input_bits: {input_bits} is not available with {fmt!r} ({backend.name} takes "
                            f"{' or '.join(map(str, backend.input_bits))}-bit inputs); set it to 8 or drop the format")


def _score_chunk(args: tuple[str, str, np.ndarray]) -> np.ndarray:
    runtime, path, x = args
    return run_batches(backends()[runtime].open(Path(path), 1), x)


def run_file(backend: Backend, path: Path, session: Session, x: np.ndarray, workers: int) -> np.ndarray:
    """Logits for every row of x through the file; a runtime that runs one sample at a time on reference kernels
    (TFLite Micro) is spread over `workers` processes, each with its own interpreter."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork, not spawn: spawn re-imports the caller's main module; the children touch only the interpreter
    if backend.speed_is_meaningful or workers <= 1 or len(x) < 200 or \
            "fork" not in multiprocessing.get_all_start_methods():
        return run_batches(session, x)

    bounds = np.linspace(0, len(x), workers + 1).astype(int)
    chunks = [take_rows(x, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]  # packed images stay lazy
    with forking(), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return np.concatenate(list(pool.map(_score_chunk, [(backend.name, str(path), c) for c in chunks])))


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
