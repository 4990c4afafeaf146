"""Structured channel pruning with Torch-Pruning: whole channels go, so the pruned model is truly smaller and faster.

The dependency graph keeps coupled layers consistent (residual adds, norms); the classifier's outputs are kept.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.errors import UserError, first_line


SCORING_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _classifier(model: nn.Module, example: torch.Tensor, num_classes: int) -> list[nn.Module]:
    """The layer that makes the class scores, which pruning must leave whole: the last Linear or convolution with
    num_classes outputs to run (a 1x1-conv head before a global pool is one too)."""
    ran: list[nn.Module] = []
    scoring = [m for m in model.modules() if isinstance(m, SCORING_LAYERS)
               and getattr(m, "out_features", getattr(m, "out_channels", 0)) == num_classes]
    hooks = [m.register_forward_hook(lambda module, args, out: ran.append(module)) for m in scoring]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return ran[-1:]


def _fits(params: int, macs: int, target_params: int | None, target_macs: int | None) -> bool:
    return (target_params is None or params <= target_params) and (target_macs is None or macs <= target_macs)


def prune_to_budget(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, target_params: int | None,
                    target_macs: int | None, norm: int = 2, steps: int = 60) -> dict:
    """Prune in place, a little at a time by channel magnitude, until params and MACs are within budget."""
    import torch_pruning as tp

    model.cpu().eval()
    example = torch.zeros(1, *input_shape)
    macs0, params0 = (int(v) for v in tp.utils.count_ops_and_params(model, example))
    try:
        pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=norm),
                                      pruning_ratio=0.98, iterative_steps=steps,
                                      ignored_layers=_classifier(model, example, num_classes))
        macs, params = macs0, params0
        for _ in range(steps):
            if _fits(params, macs, target_params, target_macs):
                break
            pruner.step()
            macs, params = (int(v) for v in tp.utils.count_ops_and_params(model, example))
    except Exception as exc:  # Torch-Pruning raises many types for graphs it cannot trace
        raise UserError(f"compress.prune: Torch-Pruning cannot prune this teacher ({first_line(exc)}); "
                        "prune a CNN teacher or switch pruning off") from None
    if not _fits(params, macs, target_params, target_macs):
        raise UserError(f"compress.prune: reached {params:,} params / {macs:,} MACs, short of the budget "
                        f"({target_params} params, {target_macs} MACs); raise the budget")
    with torch.no_grad():
        if model(example).shape[-1] != num_classes:
            raise UserError("compress.prune: pruning changed the number of outputs; report this as a bug")
    return {"params_before": params0, "params_after": params, "macs_before": macs0, "macs_after": macs,
            "target_params": target_params, "target_macs": target_macs, "importance": f"l{norm} channel magnitude"}
