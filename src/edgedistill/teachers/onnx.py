"""An ONNX file as a teacher, scored through ONNX Runtime on the CPU: its forward takes the torch batch, runs the
session on it as numpy, and returns float32 logits on the batch's device.

Its output may hold logits or probabilities (args.output, detected by default on the first training rows); a
probability p becomes the logit log(max(p, 1e-7)), whose softmax is p again. A skl2onnx classifier has two outputs,
the label and the probabilities; the first float tensor output of shape (N, classes) is read unless
args.output_name names another. Convert it with `options={id(clf): {"zipmap": False}}`: a ZipMap (a list of
dicts) is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from edgedistill.data import DataSplits
from edgedistill.errors import UserError, first_line
from edgedistill.teachers.base import ExternalTeacher

EPS = 1e-7  # probabilities are clamped here before the log, so a zero never becomes -inf
DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32}
FLOAT_OUTPUTS = ("tensor(float)", "tensor(double)", "tensor(float16)")
DETECT_ROWS = 256  # the first batch the output kind is detected on


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def external_data_files(path: Path) -> list[Path]:
    """The files an ONNX model keeps its large tensors in (external data), each inside the model's folder; a file
    that is not an ONNX model has none (the teacher refuses it when loaded)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  (not an ONNX file: OnnxTeacher names it)
        return []
    folder = path.parent.resolve()
    found = {path.parent / ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)}
    return sorted(f for f in found if f.resolve().is_relative_to(folder) and f.is_file())


def model_sha256(path: Path, data: list[tuple[str, Path]]) -> str:
    """The .onnx file's sha256, or with external data (name, file), the sha256 of it and each data file's name
    and sha256: the teacher cache's key follows every byte the session reads."""
    own = file_sha256(path)
    if not data:
        return own
    parts = [own] + [f"{name}\0{file_sha256(f)}" for name, f in data]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def digest_buffer(hexdigest: str) -> torch.Tensor:
    return torch.tensor(list(bytes.fromhex(hexdigest)), dtype=torch.uint8)


def stored_floats(path: Path) -> int:
    """The numbers the graph stores: initializer elements plus float attributes (a tree's thresholds and leaves)."""
    import onnx

    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    graph = onnx.load(str(path), load_external_data=False).graph
    tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    count = sum(math.prod(t.dims) for t in tensors if t.data_type in floating)  # not shape constants
    return int(count + sum(len(a.floats) for n in graph.node for a in n.attribute))


def is_probabilities(out: np.ndarray) -> bool:
    """Rows that are non-negative and sum to 1 within 1e-3 (probabilities computed in fp16 still do)."""
    return bool((out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, rtol=0.0, atol=1e-3))


class OnnxTeacher(ExternalTeacher):
    """Logits from an ONNX file; its buffers (the file's sha256 and the output read) key the teacher cache."""

    not_exported = ("an onnx teacher is not a torch module torch.export can trace, so it is not re-exported; its "
                    "file is kept in the run folder")

    def __init__(self, path: str | Path, field: str = "teacher.args", output: str = "detect",
                 output_name: str | None = None):
        super().__init__()
        import onnxruntime as ort

        self.path, self.field = Path(path), field
        if not self.path.is_file():
            raise UserError(f"{field}.path: ONNX file {str(self.path)!r} not found")
        self.external = external_data_files(self.path)
        self.sha256 = model_sha256(self.path, list(zip(self.data_names(), self.external)))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UserError(f"{field}.path: {self.path} is not an ONNX model ONNX Runtime can load "
                            f"({first_line(exc)})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in DTYPES:
            raise UserError(f"{field}.path: {self.path} takes {[(i.name, i.type) for i in inputs]}; a teacher "
                            "reads one tensor input (the model's features)")
        self.input, self.input_dtype = inputs[0].name, DTYPES[inputs[0].type]
        self.input_rank = len(inputs[0].shape or ())
        fixed = (inputs[0].shape or [None])[0]
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None  # exported without a batch axis
        self.output_name = self.choose_output(output_name)
        self.output = output
        self.register_buffer("onnx_sha256", digest_buffer(self.sha256))
        self.register_buffer("onnx_output", digest_buffer(hashlib.sha256(json.dumps([self.output_name, output])
                                                                         .encode()).hexdigest()))

    def choose_output(self, name: str | None) -> str:
        outputs = self.session.get_outputs()
        if name is not None:
            if name not in [o.name for o in outputs]:
                raise UserError(f"{self.field}.output_name: {self.path} has no output {name!r}; its outputs are "
                                f"{', '.join(o.name for o in outputs)}")
            return name
        floats = [o for o in outputs if o.type in FLOAT_OUTPUTS and len(o.shape) == 2]
        if floats:
            return floats[0].name
        zipmap = " (a ZipMap: convert with skl2onnx options={id(clf): {'zipmap': False}})" \
            if any(o.type.startswith("seq(map") for o in outputs) else ""
        raise UserError(f"{self.field}.path: {self.path} has no float output of shape (N, classes){zipmap}; its "
                        f"outputs are {', '.join(f'{o.name} {o.type}' for o in outputs)}")

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Float32 scores of the rows; a file exported with a fixed batch reads them that many at a time."""
        if self.input_rank == 2 and x.ndim > 2:
            x = x.reshape(len(x), -1)  # a table model (scikit-learn) reads each sample flattened
        x = x.astype(self.input_dtype)
        if self.fixed_batch is None:
            return self.run_rows(x)
        b = self.fixed_batch
        chunks = [np.concatenate([x[i:i + b], np.zeros((b - len(x[i:i + b]), *x.shape[1:]), x.dtype)])
                  for i in range(0, len(x), b)]  # the last one padded to the batch, its padding dropped below
        return np.concatenate([self.run_rows(c) for c in chunks])[:len(x)]

    def run_rows(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input: x})[0], dtype=np.float32)

    @classmethod
    def from_args(cls, args: dict, data: DataSplits, field: str) -> "OnnxTeacher":
        teacher = cls(args["path"], field, args.get("output", "detect"), args.get("output_name"))
        return teacher.checked(data)

    def checked(self, data: DataSplits) -> "OnnxTeacher":
        """Its output read on the first training rows: one score per class, finite; the output kind detected."""
        try:
            out = self.scores(np.asarray(data.x_train[:DETECT_ROWS]))
        except Exception as exc:
            raise UserError(f"{self.field}.path: {self.path} does not accept inputs of shape {data.input_shape} "
                            f"({first_line(exc)})") from None
        if out.ndim != 2 or out.shape[1] != data.num_classes:
            raise UserError(f"{self.field}.path: output {self.output_name!r} gives {tuple(out.shape[1:])} scores per "
                            f"sample, but dataset {data.name!r} has {data.num_classes} classes")
        if not np.isfinite(out).all():
            raise UserError(f"{self.field}.path: {self.path} gives NaN or inf on training samples; it cannot teach")
        if self.output == "detect":
            self.output = "probabilities" if is_probabilities(out) else "logits"
        self.onnx_output.copy_(digest_buffer(hashlib.sha256(json.dumps([self.output_name, self.output])
                                                            .encode()).hexdigest()))
        return self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.from_numpy(self.scores(x.detach().cpu().numpy()))
        if self.output == "probabilities":
            out = torch.log(out.clamp_min(EPS))
        return out.to(x.device)

    def footprint(self) -> dict:
        floats = stored_floats(self.path)
        return {"params": floats, "size_fp32_bytes": 4 * floats}

    def describe(self) -> dict:
        return {"file_sha256": self.sha256, "output": self.output, "output_name": self.output_name,
                "source_path": str(self.path), "external_data": self.data_names()}

    def data_names(self) -> list[str]:
        """Its external data files, by the names the model refers to them (relative to its folder)."""
        return [str(f.relative_to(self.path.parent)) for f in self.external]

    def keep(self, run_dir: Path, name: str = "teacher.onnx") -> list[str]:
        """Copy the file and its external data into the run folder (checked against the digest the run was keyed
        with), so later seeds and the record read the same bytes; a file already there is left as it is."""
        pairs = [(self.path, run_dir / name)] + [(f, run_dir / n) for f, n in zip(self.external, self.data_names())]
        copies = []
        try:
            for src, dest in pairs:
                if src.resolve() == dest.resolve():
                    copies.append((dest, dest))
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                shutil.copyfile(src, tmp)
                copies.append((tmp, dest))
            if model_sha256(copies[0][0], list(zip(self.data_names(), [c for c, _ in copies[1:]]))) != self.sha256:
                raise UserError(f"{self.field}.path: {self.path} or its external data changed while the run used "
                                "it; rerun")
            for tmp, dest in copies:
                if tmp != dest:
                    tmp.replace(dest)
        finally:
            for tmp, dest in copies:
                if tmp != dest:
                    tmp.unlink(missing_ok=True)
        return [name] + self.data_names()

    def run_record(self) -> dict:
        """What metrics.json says of this teacher: its footprint, the kept file and how its output was read."""
        return {**self.footprint(), "checkpoint": "teacher.onnx", "source": f"onnx:{self.path}",
                "onnx": self.describe()}
