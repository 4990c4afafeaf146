"""Can the device's runtime run this graph? When a model cannot be exported to a format or loaded by its runtime, the
failure is traced to something the user can change: the operator the runtime has no kernel for, the line of their
forward the exporter stopped at, or the layer that fails on its own."""
from __future__ import annotations

import inspect
import re
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.deploy.backends.base import Backend, RuntimeRefused
from edgedistill.errors import first_line
from edgedistill.models.evaluate import model_input
from edgedistill.quiet import third_party_output

MAX_LAYER_PROBES = 12  # layers exported on their own, at most, to find the one that fails


class Unrunnable(Exception):
    """A model the runtime of a format cannot run, with what in the model it stopped at."""

    def __init__(self, fmt: str, title: str, culprit: str, reason: str):
        self.fmt, self.title, self.culprit, self.reason = fmt, title, culprit, reason
        super().__init__(f"{title} ({fmt}) cannot run {culprit}" + (f": {reason}" if reason else ""))


def explain(exc: BaseException, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
            backend: Backend, fmt: str, dtype: str, input_bits: int) -> Unrunnable:
    """What in the model a failed export or load stopped at, as one Unrunnable."""
    title = backend.title or backend.name
    if isinstance(exc, RuntimeRefused) and exc.operators:
        origin = torch_origin(model, input_shape, exc.operators[0])
        return Unrunnable(fmt, title, f"operator {', '.join(exc.operators)}{_from(origin)}", "it has no kernel for it")
    if isinstance(exc, RuntimeRefused):
        return Unrunnable(fmt, title, "this model", str(exc))
    reason = first_line(exc)
    named = aten_op_named(exc)
    if named:
        aten, said = named
        where = torch_origin(model, input_shape, aten)
        return Unrunnable(fmt, title, f"operator aten.{aten}{_from(where, with_op=False)}",
                          f"the {dtype} export has no translation for it ({said})")
    line = model_code_line(exc, model)
    if line:
        return Unrunnable(fmt, title, f"the model's code at {line}", f"the {dtype} export stops there ({reason})")
    layer = failing_layer(model, calibration_x, backend, dtype, input_bits)
    if layer:
        return Unrunnable(fmt, title, layer, f"its {dtype} export fails on its own ({reason})")
    return Unrunnable(fmt, title, "this model", f"the {dtype} export fails ({reason})")


def _from(origin: tuple[str, str] | None, with_op: bool = True) -> str:
    """` (aten.sort at my_model.py:42)`, or ` (at my_model.py:42)` when the op is already named."""
    if origin is None or not (with_op or origin[1]):
        return ""
    op, where = origin
    return " (" + " ".join(filter(None, [f"aten.{op}" if with_op else "", f"at {where}" if where else ""])) + ")"


def aten_op_named(exc: BaseException) -> tuple[str, str] | None:
    """The aten operator an exporter names in its failure (`No ONNX function found for aten.kthvalue`), with the
    first line of the deepest exception that names it (the outer ones say only which step failed)."""
    found, seen = None, exc
    while seen is not None:
        op = re.search(r"aten[.:]+(\w+)", str(seen))
        if op:
            found = (op.group(1), first_line(seen))
        seen = seen.__cause__ or seen.__context__
    return found


def model_files(model: nn.Module) -> set[str]:
    """The source files of the model's own classes (a user's module, the zoo's), not torch's."""
    torch_dir = str(Path(torch.__file__).parent)
    files = set()
    for m in model.modules():
        try:
            path = inspect.getsourcefile(type(m))
        except (TypeError, OSError):
            continue
        if path and not path.startswith(torch_dir):
            files.add(str(Path(path).resolve()))
    return files


def model_code_line(exc: BaseException, model: nn.Module) -> str | None:
    """`file:line (`code`)` of the deepest frame of the model's own code in the failure's traceback."""
    files = model_files(model)
    found = None
    seen: BaseException | None = exc
    while seen is not None:
        for frame in traceback.extract_tb(seen.__traceback__):
            if str(Path(frame.filename).resolve()) in files:
                found = frame
        seen = seen.__cause__ or seen.__context__
    if found is None:
        return None
    code = f" (`{found.line.strip()}`)" if found.line else ""
    return f"{_short(found.filename)}:{found.lineno}{code}"


def _short(path: str) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def torch_origin(model: nn.Module, input_shape: tuple[int, ...], op: str) -> tuple[str, str] | None:
    """Where an operator came from in the model: the aten op whose name it carries (STABLEHLO_SORT -> sort) and
    `file:line` of the model's code that called it ("" when torch does not say)."""
    word = op.lower().removeprefix("stablehlo_").split("_")[0]
    try:
        with third_party_output():
            graph = torch.export.export(model.cpu().eval(), (torch.zeros(1, *input_shape),), strict=False).graph
    except Exception:  # noqa: BLE001 - the origin is a courtesy; the operator is named either way
        return None
    for node in graph.nodes:
        name = str(node.target).split(".")
        if node.op == "call_function" and len(name) > 1 and word in name[1]:
            frames = re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or "")
            return name[1], (f"{_short(frames[-1][0])}:{frames[-1][1]}" if frames else "")
    return None


class _FirstOutput(nn.Module):
    """A layer that returns a tuple (a GRU's output and state), exported for its first output."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each leaf layer receives on x, in the order the layers run."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: seen.setdefault(name, args[0]) if args and
                                         isinstance(args[0], torch.Tensor) else None)
             for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def failing_layer(model: nn.Module, calibration_x: np.ndarray, backend: Backend, dtype: str,
                  input_bits: int) -> str | None:
    """The first layer (in the order they run) whose export fails on its own: `layer 'rnn' (GRU)`."""
    model = model.cpu().eval()
    try:
        inputs = layer_inputs(model, model_input(np.asarray(calibration_x[:16]), dtype=torch.float32))
    except Exception:  # noqa: BLE001 - a model that cannot even run here has no layer to blame
        return None
    modules = dict(model.named_modules())
    tried: set[tuple] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in inputs.items():
            layer = modules[name]
            key = (type(layer), tuple(x.shape[1:]))
            if key in tried or len(tried) >= MAX_LAYER_PROBES or x.dim() < 2:
                continue
            tried.add(key)
            try:
                backend.export(_FirstOutput(layer), tuple(x.shape[1:]), x.numpy(), Path(tmp) / f"layer{backend.suffix}",
                               dtype, input_bits=input_bits)
            except Exception:  # noqa: BLE001 - this layer is the one the runtime's converter refuses
                return f"layer {name!r} ({type(layer).__name__})"
    return None
