"""Edge runtimes behind one interface: each exports fp32 and int8 files and runs them on this host through its own
runtime, so accuracy, agreement with PyTorch and latency are measured on the very file a device loads.

A format is `runtime-dtype` (`tflm-int8`, `executorch-fp32`, `onnxruntime-int8`, or `pkg.module:NAME-fp32` for a
backend of the user's own). The device profile names the formats it takes; `deploy.formats` overrides them. What
differs between runtimes (an input width to fall back from, the file's size, the RAM estimate, an NPU compiler) is a
hook on the Backend, so the deploy core treats every backend alike.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch.nn as nn

from edgedistill.data.rows import take_rows
from edgedistill.errors import UserError
from edgedistill.quiet import forking  # noqa: F401  (the TFLM backend forks its probes with it)

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


def onnx_ram_graph(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray) -> bytes:
    """The default RAM estimate's graph: the model's fp32 ONNX graph, exported once per model."""
    from edgedistill.deploy.estimate import onnx_fp32_graph

    return onnx_fp32_graph(model, input_shape, calibration_x)


def onnx_ram_peak(graph: bytes, path: Path, dtype: str) -> int:
    """The default RAM estimate: peak live activations along the fp32 ONNX graph, at the dtype's element size."""
    from edgedistill.deploy.estimate import graph_peak

    return graph_peak(graph, ACTIVATION_BYTES[dtype])


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
    ram_graph: Callable[[nn.Module, tuple[int, ...], np.ndarray], Any] = onnx_ram_graph  # once per model
    ram_peak: Callable[[Any, Path, str], int] = onnx_ram_peak  # (ram_graph's result, file, dtype) -> bytes
    npu: NpuCompiler | None = None  # compiles its `npu.dtype` file for a device with an NPU
    companions: Callable[[Path], list[Path]] = no_companions  # files written beside it, removed when it fails

    def make_file(self, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, path: Path,
                  dtype: str, input_bits: int) -> dict:
        """Write the file; returns notes on how it was made."""
        if self.write is not None:
            return self.write(model, input_shape, calibration_x, path, dtype, input_bits)
        self.export(model, input_shape, calibration_x, path, dtype, input_bits=input_bits)
        return {}


def _registry() -> dict[str, Backend]:
    from edgedistill.deploy.backends import executorch, litert, onnxruntime, tflm

    return {b.name: b for b in (onnxruntime.BACKEND, executorch.BACKEND, litert.BACKEND, tflm.BACKEND)}


def backends() -> dict[str, Backend]:
    return _registry()


def parse_format(fmt: str, field_name: str = "deploy.formats") -> tuple[Backend, str]:
    """`runtime-dtype` to its backend and dtype, or one line naming what is known. The runtime may be an import path,
    `pkg.module:NAME`, naming a Backend of the user's own (as a model may be `pkg.module:factory`)."""
    runtime, _, dtype = fmt.rpartition("-")
    known = backends()
    if ":" in runtime and dtype in DTYPES:
        return _import_backend(runtime, fmt, field_name), dtype
    if runtime not in known or dtype not in DTYPES:
        choices = ", ".join(f"{r}-{d}" for r in known for d in DTYPES)
        raise UserError(f"{field_name}: unknown format {fmt!r}; choose from {choices}")
    return known[runtime], dtype


def _import_backend(spec: str, fmt: str, field_name: str) -> Backend:
    """The Backend a format's import path names."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:
        raise UserError(f"{field_name}: format {fmt!r}: cannot import module {module_name!r} ({exc}); check the "
                        "import path") from None
    backend = getattr(module, attr, None)
    if not isinstance(backend, Backend):
        raise UserError(f"{field_name}: format {fmt!r}: module {module_name!r} has no Backend named {attr!r}")
    return backend


def missing_runtime(backend: Backend | NpuCompiler) -> str | None:
    """The pip command that would make this backend (or compiler) work here, or None when it already does."""
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


def _score_chunk(args: tuple[Backend, str, np.ndarray]) -> np.ndarray:
    backend, path, x = args
    return run_batches(backend.open(Path(path), 1), x)


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
        return np.concatenate(list(pool.map(_score_chunk, [(backend, str(path), c) for c in chunks])))


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
