"""A model prepared for inference-only passes such as building the teacher cache: batch norms folded into the
convolutions before them, and 2-D convolution weights in channels-last order.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can join the convolution's
weights, and the pass skips one read and write of every feature map. Channels-last weights make oneDNN run the
whole network in NHWC, which its bf16 kernels prefer. With batches of 128, they cut the Fashion-MNIST teacher
cache's build on a 2-core Xeon from 100.6 s to 31.1 s (benchmarks/kd_throughput.py). The pairs are found by torch.fx; the
copy keeps the original's module names (each folded BatchNorm becomes an Identity, whose output is the BatchNorm's),
so hooks on named modules (the tap recorder's) see the same values. A model fx cannot trace is not folded.
"""
from __future__ import annotations

import copy
import logging
from collections import Counter

import torch
import torch.fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger("edgedistill")
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def conv_bn_pairs(model: nn.Module, keep: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the batch norm reads only that conv's output and each is called once;
    a conv named in `keep` (a tap, whose raw output is read) is left alone, and so is a batch norm without running
    statistics (track_running_stats=False), which normalises with the batch's own even in eval mode."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - control flow, external teachers: any trace failure means "don't fold"
        log.debug("batch-norm folding skipped: %s cannot be traced (%s)", type(model).__name__, e)
        return []
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not foldable_norm(modules.get(node.target)) or len(node.args) != 1:
            continue
        prev = node.args[0]
        if (isinstance(prev, torch.fx.Node) and prev.op == "call_module" and isinstance(modules.get(prev.target), CONVS)
                and len(prev.users) == 1 and calls[prev.target] == 1 and calls[node.target] == 1
                and prev.target not in keep):
            pairs.append((prev.target, node.target))
    return pairs


def foldable_norm(module: nn.Module | None) -> bool:
    """A batch norm that is a fixed affine map in eval mode: one with running statistics to fold."""
    return isinstance(module, NORMS) and module.running_mean is not None and module.running_var is not None


def for_inference(model: nn.Module, keep: set[str] = frozenset(), channels_last: bool = False) -> nn.Module:
    """An eval-mode copy of `model` with every foldable batch norm merged into its conv (with its running
    statistics, as in eval mode) and, with `channels_last`, its 2-D convolutions' weights in that order; `model`
    itself is untouched. Returns `model` when neither applies."""
    pairs = conv_bn_pairs(model, keep)
    channels_last = channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if not pairs and not channels_last:
        return model
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        folded.set_submodule(conv_name, fused)
        folded.set_submodule(bn_name, nn.Identity())
    return folded.to(memory_format=torch.channels_last) if channels_last else folded
