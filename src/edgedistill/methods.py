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
    kind: str  # "logit": replaces the hard-label loss; "feature": added on top, reads tap features; "relation":
    # added on top like "feature", but relates samples to one another (CRD: a memory bank of every training sample)
    build: str  # "module:function" that takes (distill config, label smoothing) and returns the loss
    describe: Callable[[dict], str]  # the recipe in words, from the distill section of a config or metrics.json
    paper: str
    # what it reads of the teacher: "logits", "features" (tap outputs: a teacher that is not a torch module, such as
    # an ONNX file, cannot give them), "views" (logits on every cached augmented view: needs distill.cache)
    needs: frozenset[str] = frozenset({"logits"})
    standardize: bool = False  # accepts distill.logit_standardization (z-scored logits, Sun et al., CVPR 2024)


def _ls(d: dict) -> str:
    return "+LS" if d.get("logit_standardization") else ""


METHODS: dict[str, MethodSpec] = {
    "kd": MethodSpec("logit", "edgedistill.distill.kd:from_config",
                     lambda d: f"kd{_ls(d)} (T={d['temperature']}, alpha={d['alpha']})", "Hinton, Vinyals, Dean 2015",
                     standardize=True),
    "dkd": MethodSpec("logit", "edgedistill.distill.dkd:from_config",
                      lambda d: (f"dkd{_ls(d)} (T={d['temperature']}, alpha={d['dkd']['alpha']}, "
                                 f"beta={d['dkd']['beta']}, CE weight {d['dkd']['ce_weight']}"
                                 f"{_warmup(d['dkd'].get('warmup_epochs', 0))})"), "Zhao et al., CVPR 2022",
                      standardize=True),
    "dist": MethodSpec("logit", "edgedistill.distill.dist:from_config",
                       lambda d: (f"dist{_ls(d)} (T={d['dist']['temperature']}, beta={d['dist']['beta']}, "
                                  f"gamma={d['dist']['gamma']}, CE weight {d['dist']['ce_weight']})"),
                       "Huang et al., NeurIPS 2022", standardize=True),
    "nkd": MethodSpec("logit", "edgedistill.distill.nkd:from_config",
                      lambda d: f"nkd (T={d['nkd']['temperature']}, gamma={d['nkd']['gamma']})",
                      "Yang et al., ICCV 2023"),
    "mvkd": MethodSpec("logit", "edgedistill.distill.mvkd:from_config",
                       lambda d: (f"mvkd (T={d['temperature']}, alpha={d['alpha']}, "
                                  f"{d.get('cache', {}).get('views', '?')} cached views)"),
                       "edgedistill's own, unpublished", frozenset({"logits", "views"})),
    "fitnets": MethodSpec("feature", "edgedistill.distill.fitnets:from_config",
                          lambda d: f"fitnets (weight {d['fitnets']['weight']})", "Romero et al., ICLR 2015",
                          frozenset({"features"})),
    "at": MethodSpec("feature", "edgedistill.distill.at:from_config",
                     lambda d: f"at (weight {d['at']['weight']}, p={d['at']['p']})", "Zagoruyko, Komodakis, ICLR 2017",
                     frozenset({"features"})),
    "reviewkd": MethodSpec("feature", "edgedistill.distill.reviewkd:from_config",
                           lambda d: (f"reviewkd (weight {d['reviewkd']['weight']}"
                                      f"{_warmup(d['reviewkd']['warmup_epochs'])})"),
                           "Chen, Liu, Zhao, Jia, CVPR 2021", frozenset({"features"})),
    "crd": MethodSpec("relation", "edgedistill.distill.crd:from_config",
                      lambda d: (f"crd (weight {d['crd']['weight']}, dim {d['crd']['feat_dim']}, "
                                 f"K={d['crd']['nce_k']}, T={d['crd']['nce_t']})"),
                      "Tian, Krishnan, Isola, ICLR 2020", frozenset({"features"})),
}


def _warmup(epochs: int | None) -> str:
    """DKD's warm-up as the report says it; a metrics.json from before the warm-up had none."""
    return ", no warm-up" if epochs == 0 else ", warm-up 1/12 of epochs" if epochs is None else f", warm-up {epochs}"


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
