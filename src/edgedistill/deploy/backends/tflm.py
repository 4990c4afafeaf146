"""TensorFlow Lite Micro (microcontrollers): the int8 .tflite, compiled into the firmware as an aligned C array,
with the op resolver it needs. TFLM's host interpreter runs the same file with its reference kernels and reports
the tensor arena it really allocated: the RAM figure of the fit check."""
from __future__ import annotations

import faulthandler
import functools
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from edgedistill.deploy.backends import Backend, dequantize, forking, quantize_input
from edgedistill.deploy.backends.litert import export

ARENA_LINE = re.compile(r"Arena allocation total (\d+) bytes")
PROBE_ARENA = 64 * 1024 * 1024  # generous for the first allocation; the measured figure replaces it
ALIGNMENT = 16  # TFLM reads the flatbuffer in place and wants it 16-byte aligned


def _interpreter(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def _stderr_of(call) -> str:
    """What a C++ call prints on fd 2 (TFLM's allocation report goes nowhere else)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace")


def _runs_in(model: bytes, arena: int) -> bool:
    """Whether the interpreter allocates and invokes in an arena of this size. Each try runs in a forked child:
    some arenas just short of enough crash the interpreter (a segmentation fault) instead of failing cleanly."""
    with forking():
        pid = os.fork()
    if pid == 0:  # the child: touch only the interpreter, say yes or no by exit code, never return
        code = 1
        try:
            faulthandler.disable()  # a crash here is an answer (no), not a report for the parent's stderr
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            it = _interpreter(model, arena)
            detail = it.get_input_details(0)
            it.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
            it.invoke()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def recorded_arena(model: bytes) -> int:
    """The total TFLite Micro's recording allocator reports after one inference in a generous arena."""
    it = _interpreter(model, PROBE_ARENA)
    detail = it.get_input_details(0)
    it.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    it.invoke()
    found = ARENA_LINE.search(_stderr_of(it.print_allocations))
    if not found:
        raise RuntimeError("TFLite Micro printed no arena total")
    return int(found.group(1))


@functools.lru_cache(maxsize=8)  # the session that scores a file asks again for the arena its extras measured
def measure_arena(model: bytes) -> dict:
    """The smallest tensor arena (to 16 bytes) in which TFLite Micro's interpreter allocates and runs this model.

    The recording allocator's total leaves out the temporary memory kernels take while they prepare, so a board
    given only that total fails at start-up; the figure here is found by bisection between that total and a bound
    that runs, so it is what the interpreter really needs (a host buffer's alignment may add up to 15 bytes).
    """
    total = recorded_arena(model)
    lo, hi = total, max(2 * total, total + 4096)
    while not _runs_in(model, hi):
        lo, hi = hi, 2 * hi
        if hi > PROBE_ARENA:
            raise RuntimeError("TFLite Micro did not run this model in a 64 MB arena")
    while hi - lo > ALIGNMENT:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _runs_in(model, mid) else (mid, hi)
    return {"arena_bytes": -(-hi // ALIGNMENT) * ALIGNMENT, "recorded_total_bytes": total}


def operators(model: bytes) -> list[str]:
    """The builtin operators the model uses, as TFLite names them (CONV_2D, FULLY_CONNECTED, ...)."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    obj = runtime.convert_bytearray_to_object(bytearray(model))
    return sorted({names[runtime.get_builtin_code_from_operator_code(c)] for c in obj.operatorCodes})


RESOLVER_NAMES = {"BATCH_MATMUL": "BatchMatMul"}


def resolver_call(op: str) -> str:
    name = RESOLVER_NAMES.get(op) or "".join(p if any(c.isdigit() for c in p) else p.capitalize()
                                             for p in op.split("_"))
    return f"resolver.Add{name}();"


def c_identifier(stem: str) -> str:
    return re.sub(r"\W", "_", stem)


def write_c_source(tflite: Path, arena: int, ops: list[str]) -> tuple[Path, Path]:
    """`<stem>.h` and `<stem>.cc`: the model bytes as a 16-byte aligned array, its length and the arena size."""
    data = tflite.read_bytes()
    ident = c_identifier(tflite.stem)
    header, source = tflite.with_suffix(".h"), tflite.with_suffix(".cc")
    guard = f"EDGEDISTILL_{ident.upper()}_H_"
    header.write_text(
        f"// Generated by edgedistill from {tflite.name}: TensorFlow Lite Micro model data.\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <cstddef>\n\n"
        f"extern const unsigned char g_{ident}[];\nextern const unsigned int g_{ident}_len;\n"
        f"// the smallest tensor arena TFLite Micro's host interpreter (reference kernels) ran it in; optimized\n"
        f"// kernels (CMSIS-NN) ask for scratch buffers of their own, so keep a margin\n"
        f"constexpr size_t k{ident}_arena_bytes = {arena};  // declare it alignas({ALIGNMENT})\n"
        f"// operators to register, e.g. tflite::MicroMutableOpResolver<{len(ops)}> resolver;\n"
        + "".join(f"//   {resolver_call(op)}\n" for op in ops) + f"\n#endif  // {guard}\n")
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    source.write_text(f'#include "{header.name}"\n\n'
                      f"alignas({ALIGNMENT}) const unsigned char g_{ident}[] = {{\n  " + ",\n  ".join(rows)
                      + f"\n}};\nconst unsigned int g_{ident}_len = {len(data)};\n")
    return header, source


def extras(tflite: Path, dtype: str) -> dict:
    """Measure the arena, then write the C pair and the op list beside the .tflite."""
    model = tflite.read_bytes()
    arena = measure_arena(model)
    ops = operators(model)
    header, source = write_c_source(tflite, arena["arena_bytes"], ops)
    return {"measured_ram_bytes": arena["arena_bytes"], "arena_recorded_total_bytes": arena["recorded_total_bytes"],
            "ram_how": "smallest tensor arena TFLite Micro's interpreter runs in",
            "files": [header.name, source.name], "operators": ops,
            "op_resolver": [resolver_call(op) for op in ops]}


class TflmSession:
    """TFLite Micro's interpreter at batch 1 in an arena of the measured size."""

    max_batch = 1

    def __init__(self, path: Path, threads: int):
        model = path.read_bytes()
        self._it = _interpreter(model, measure_arena(model)["arena_bytes"] + ALIGNMENT)
        self._in, self._out = self._it.get_input_details(0), self._it.get_output_details(0)

    def _quant(self, detail: dict) -> tuple[float, int]:
        q = detail["quantization_parameters"]
        return float(q["scales"][0]), int(q["zero_points"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(len(x)):
            xi = x[i:i + 1].reshape(self._in["shape"])
            if self._in["dtype"] != np.float32:
                xi = quantize_input(xi, *self._quant(self._in), self._in["dtype"])
            self._it.set_input(xi.astype(self._in["dtype"]), 0)
            self._it.invoke()
            y = self._it.get_output(0)
            rows.append(y.astype(np.float32) if self._out["dtype"] == np.float32
                        else dequantize(y, *self._quant(self._out)))
        return np.concatenate(rows).reshape(len(x), -1)


BACKEND = Backend(name="tflm", suffix=".tflite", modules=("litert_torch", "tflite_micro"),
                  pip="pip install 'edgedistill[tflm]'", export=export, open=TflmSession,
                  speed_is_meaningful=False, extras=extras,
                  note="TensorFlow Lite Micro: the .tflite plus a .cc/.h pair to compile into the firmware; "
                       "host latency is TFLM's reference kernels, not a device figure")
