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

from edgedistill.deploy.backends.base import Backend, RuntimeRefused, dequantize, quantize_input
from edgedistill.deploy.backends.litert import export
from edgedistill.deploy.backends.tflm_c import ALIGNMENT, c_pair
from edgedistill.deploy.npu import VELA
from edgedistill.quiet import forking, third_party_output

ARENA_LINE = re.compile(r"Arena allocation total (\d+) bytes")
MISSING_OP = re.compile(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'")
PROBE_ARENA = 64 * 1024 * 1024  # generous for the first allocation; the measured figure replaces it
ARENA_HOW = "the smallest arena TFLite Micro's host interpreter (reference kernels) ran the model in"


def _open(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def _interpreter(model: bytes, arena: int):
    """TFLM's interpreter, its C++ output sent to the library log; a model it cannot load is refused naming the
    operators it has no kernel for (it prints them, then raises only "failed to allocate tensors")."""
    with third_party_output() as said:
        try:
            return _open(model, arena)
        except RuntimeError as exc:
            failure = exc
    missing = list(dict.fromkeys(MISSING_OP.findall(said.text)))
    if missing:
        raise RuntimeRefused(f"TensorFlow Lite Micro has no kernel for operator {', '.join(missing)}",
                             missing) from failure
    said_last = [ln.strip() for ln in said.text.splitlines() if ln.strip()]
    raise RuntimeRefused(f"TensorFlow Lite Micro could not load the model ({said_last[-1] if said_last else failure})"
                         ) from failure


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
            it = _open(model, arena)
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
    with third_party_output() as said:
        try:
            it.invoke()
        except RuntimeError as exc:
            failure = exc
        else:
            failure = None
    if failure is not None:
        last = [ln.strip() for ln in said.text.splitlines() if ln.strip()]
        raise RuntimeRefused(f"TensorFlow Lite Micro failed to run the model ({last[-1] if last else failure})"
                             ) from failure
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


def extras(tflite: Path, dtype: str) -> dict:
    """Measure the arena, then write the C pair and the op list beside the .tflite."""
    arena = measure_arena(tflite.read_bytes())
    return {"measured_ram_bytes": arena["arena_bytes"], "arena_recorded_total_bytes": arena["recorded_total_bytes"],
            "ram_how": "smallest tensor arena TFLite Micro's interpreter runs in",
            **c_pair(tflite, arena["arena_bytes"], ARENA_HOW)}


def companions(tflite: Path) -> list[Path]:
    """The C pair beside the .tflite, and Vela's compiled file with its own pair."""
    vela = tflite.with_name(f"{tflite.stem}_vela.tflite")
    return [tflite.with_suffix(".h"), tflite.with_suffix(".cc"), vela, vela.with_suffix(".h"), vela.with_suffix(".cc")]


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
                  speed_is_meaningful=False, extras=extras, npu=VELA, companions=companions,
                  title="TensorFlow Lite Micro", note="TensorFlow Lite Micro: the .tflite plus a .cc/.h pair to compile into the firmware; "
                       "host latency is TFLM's reference kernels, not a device figure")
