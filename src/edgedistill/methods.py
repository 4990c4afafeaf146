"""Every distillation method by name: its kind, its paper, how it is built and how it reads in a report.

Adding a method is its own file in distill/ (a Method subclass and a `from_config(distill, label_smoothing)`)
plus one entry here; config validation, build_method, the QAT filter and the report's label all read this table. It imports no
torch, so the config can check names against it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class MethodSpec:
    kind: str  # "logit": replaces the hard-label loss; "feature": added on top, reads tap features
    build: str  # "module:function" that takes (distill config, label smoothing) and returns the loss
    describe: Callable[[dict], str]  # the recipe in words, from the distill section of a config or metrics.json
    paper: str
    # what it reads of the teacher: "logits", "features" (tap outputs: a teacher that is not a torch module, such as
    # an ONNX file, cannot give them), "views" (logits on every cached augmented view: needs distill.cache)
    needs: frozenset[str] = frozenset({"logits"})


METHODS: dict[str, MethodSpec] = {
    "kd": MethodSpec("logit", "edgedistill.distill.kd:from_config",
                     lambda d: f"kd (T={d['temperature']}, alpha={d['alpha']})", "Hinton, Vinyals, Dean 2015"),
    "dkd": MethodSpec("logit", "edgedistill.distill.dkd:from_config",
                      lambda d: (f"dkd (T={d['temperature']}, alpha={d['dkd']['alpha']}, beta={d['dkd']['beta']}, "
                                 f"CE weight {d['dkd']['ce_weight']})"), "Zhao et al., CVPR 2022"),
    "fitnets": MethodSpec("feature", "edgedistill.distill.fitnets:from_config",
                          lambda d: f"fitnets (weight {d['fitnets']['weight']})", "Romero et al., ICLR 2015",
                          frozenset({"features"})),
    "at": MethodSpec("feature", "edgedistill.distill.at:from_config",
                     lambda d: f"at (weight {d['at']['weight']}, p={d['at']['p']})", "Zagoruyko, Komodakis, ICLR 2017",
                     frozenset({"features"})),
}


def of_kind(kind: str) -> list[str]:
    return [name for name, spec in METHODS.items() if spec.kind == kind]


def build_one(name: str, distill: Any, label_smoothing: float) -> Any:
    module, _, function = METHODS[name].build.partition(":")
    return getattr(importlib.import_module(module), function)(distill, label_smoothing)


def describe(distill: dict) -> str:
    """The distillation recipe in words, e.g. 'kd (T=4.0, alpha=0.9) + at (weight 1000.0, p=2.0)'."""
    methods = [distill["method"]] if isinstance(distill["method"], str) else distill["method"]
    parts = [METHODS[m].describe(distill) if m in METHODS else m for m in methods]
    if not set(of_kind("logit")) & set(methods):
        parts.insert(0, "CE")
    return " + ".join(parts)
