"""Edge runtimes behind one interface: each exports fp32 and int8 files and runs them on this host through its own
runtime, so accuracy, agreement with PyTorch and latency are measured on the very file a device loads.

A format is `runtime-dtype` (`tflm-int8`, `executorch-fp32`, `onnxruntime-int8`, or `pkg.module:NAME-fp32` for a
backend of the user's own). The device profile names the formats it takes; `deploy.formats` overrides them. What
differs between runtimes (an input width to fall back from, the file's size, the RAM estimate, an NPU compiler) is a
hook on the Backend (backends/base.py), so the deploy core treats every backend alike. This module is the registry.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from edgedistill.data.rows import take_rows
from edgedistill.deploy.backends.base import (DTYPES, Backend, NpuCompiler, RuntimeRefused, Session,  # noqa: F401
                                              run_batches)
from edgedistill.errors import UserError
from edgedistill.quiet import forking


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
