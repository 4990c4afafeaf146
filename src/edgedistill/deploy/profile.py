"""Measured footprint of a model: MACs, peak activation memory along the ONNX graph, and latency on this host."""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}  # onnx TensorProto


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample's forward pass, from torch's FLOP counter (FLOPs / 2)."""
    model = model.cpu().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops() // 2)


def _static_shapes(model, batch: int) -> dict[str, tuple[list[int], int]]:
    """Element shape and element type of every tensor, after fixing the batch axis and inferring the rest."""
    import onnx

    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    infos = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = value.type.tensor_type
        infos[value.name] = ([d.dim_value if d.HasField("dim_value") else batch for d in t.shape.dim], t.elem_type)
    return infos


def peak_activation_bytes(onnx_path: Path, bytes_per_element: int | None = None, batch: int = 1,
                          tensor_bytes: dict[str, int] | None = None) -> int:
    """The largest sum of live activation tensors while the graph runs in its stored (topological) order.

    A tensor is live from the node that makes it (or from the start, for the input) through its last consumer;
    the outputs of the running node count together with everything still live. Weights are not activations and are
    left out. bytes_per_element overrides each tensor's own element size (1 for an integer-only int8 runtime), and
    tensor_bytes overrides it again for named tensors (2 for a 16-bit input).
    """
    import onnx

    model = onnx.load(str(onnx_path))
    shapes = _static_shapes(model, batch)
    weights = {init.name for init in model.graph.initializer}
    weights |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}

    def size(name: str) -> int:
        if name not in shapes or name in weights or not name:
            return 0
        dims, elem = shapes[name]
        per = (tensor_bytes or {}).get(name) or bytes_per_element or DTYPE_BYTES.get(elem, 4)
        return math.prod(dims) * per

    nodes = list(model.graph.node)
    last_use = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            last_use[name] = i
    for out in model.graph.output:
        last_use[out.name] = len(nodes)
    live = {inp.name: size(inp.name) for inp in model.graph.input if inp.name not in weights}
    peak = sum(live.values())
    for i, node in enumerate(nodes):
        for name in node.output:
            live[name] = size(name)
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if last_use.get(name, -1) <= i:
                del live[name]
    return int(peak)


def graph_peak(onnx_fp32: bytes, bytes_per_element: int, tensor_bytes: dict[str, int] | None = None) -> int:
    """peak_activation_bytes of a graph held in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(onnx_fp32)
        return peak_activation_bytes(fp32, bytes_per_element, tensor_bytes=tensor_bytes)


def measure_latency(session: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, ...], threads: int,
                    runs: int = 100, warmup: int = 10, throughput_batch: int = 64,
                    throughput_seconds: float = 1.0) -> dict:
    """Batch-1 latency p50/p95 and batch-64 throughput of a loaded file on this host (a session that runs one
    sample at a time goes through the batch one by one, as its runtime would)."""
    x1 = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        session(x1)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session(x1)
        times.append((time.perf_counter() - t0) * 1000)
    xb = np.repeat(x1, throughput_batch, axis=0)
    session(xb)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < throughput_seconds or n == 0:
        session(xb)
        n += 1
    return {"latency_p50_ms": float(np.percentile(times, 50)), "latency_p95_ms": float(np.percentile(times, 95)),
            "throughput_batch": throughput_batch,
            "throughput_per_s": float(n * throughput_batch / (time.perf_counter() - t0)),
            "throughput_seconds": throughput_seconds,
            "threads": threads, "runs": runs, "measured_on": "host"}


def host_threads(threads: int) -> int:
    return max(1, min(threads, os.cpu_count() or 1))
