"""Export to ONNX with torch's exporter and check the file with ONNX Runtime against PyTorch on real data."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.atomic import atomic_write_bytes
from edgedistill.quiet import third_party_output

INPUT_NAME, OUTPUT_NAME = "input", "logits"
_EXPORTED: dict[str, bytes] = {}  # the last few exports: deploying one model needs its fp32 graph three times
_KEEP = 4


def _fingerprint(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The same module object with the same weights and input shape exports the same graph."""
    h = hashlib.sha256(f"{id(model)}{type(model).__qualname__}{input_shape}{model}".encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """fp32 ONNX with a dynamic batch axis; weights are embedded, so the file's bytes are the model's bytes.
    torch's exporter takes seconds even for a tiny model, so a graph just exported is written again from memory."""
    model = model.cpu().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _fingerprint(model, tuple(input_shape))
    if key in _EXPORTED:
        atomic_write_bytes(path, _EXPORTED[key])
        return path
    _export(model, input_shape, path)
    _EXPORTED[key] = path.read_bytes()
    while len(_EXPORTED) > _KEEP:
        _EXPORTED.pop(next(iter(_EXPORTED)))
    return path


def _export(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    example = torch.zeros(2, *input_shape)  # batch 2: a batch of 1 would be specialised into the graph
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with third_party_output():  # progress, deprecations and, on failure, graph dumps
            torch.onnx.export(model, (example,), str(tmp), dynamo=True, external_data=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        strip_debug_info(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node stack traces and cached shapes: they ship no behaviour, only bytes."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def onnx_file_bytes(path: Path) -> int:
    """Bytes on disk of the model, including any external weight data files beside it."""
    import onnx

    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for init in model.graph.initializer for entry in init.external_data
                 if entry.key == "location"}
    return total + sum((path.parent / loc).stat().st_size for loc in locations)


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_logits(path: Path, x: np.ndarray, batch_size: int = 512, threads: int | None = None) -> np.ndarray:
    sess = ort_session(path, threads or min(4, os.cpu_count() or 1))
    outs = [sess.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + batch_size].astype(np.float32)})[0]
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def logit_agreement(onnx_logits: np.ndarray, torch_logits: np.ndarray) -> dict:
    """Largest absolute logit difference between ONNX Runtime and PyTorch, and how often their argmax agrees."""
    return {"max_abs_logit_diff": float(np.max(np.abs(onnx_logits - torch_logits))),
            "argmax_agreement": float(np.mean(onnx_logits.argmax(1) == torch_logits.argmax(1)))}
