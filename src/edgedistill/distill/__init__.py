"""Distillation methods, one per file, and `METHODS`, the registry every other part reads them through.

Every method meets distill.method.Method: called with the student's logits, the teacher's logits (None without a
teacher) and the targets, it returns named, already weighted loss terms that the trainer (train/trainer.py) sums.
Feature methods (FitNets, attention transfer, ReviewKD) and relation methods (CRD) are added on top through
FeatureDistillation, which also receives tap features. A registry entry (`MethodSpec`, spec.py) holds a method's
builder, settings and refusals; the built-in entries are in registry.py, and a user's own method is added with
`register_method(name, MethodSpec(...))` from a module that the config names in `distill.plugins`.
This module imports no torch: `METHODS` loads registry.py (and torch with it) on its first read, so the config can
be imported without torch; validating a distill section reads the registry.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from edgedistill.distill.spec import MethodSpec, Offer, per_sample, warmup_words  # noqa: F401  (re-exported)


class Registry(Mapping[str, MethodSpec]):
    """The built-in methods (distill/registry.py, loaded on first read) followed by those registered since."""

    def __init__(self) -> None:
        self.added: dict[str, MethodSpec] = {}
        self.table: dict[str, MethodSpec] | None = None

    def _all(self) -> dict[str, MethodSpec]:
        if self.table is None:
            from edgedistill.distill.registry import BUILTIN  # torch: read when first needed, not at import

            self.table = {**BUILTIN, **self.added}
        return self.table

    def register(self, name: str, spec: MethodSpec) -> None:
        if name in self._all():
            raise ValueError(f"a method named {name!r} is already registered")
        self.added[name] = self.table[name] = spec

    def __getitem__(self, name: str) -> MethodSpec:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


METHODS = Registry()
register_method = METHODS.register


def of_kind(kind: str) -> list[str]:
    return [name for name, spec in METHODS.items() if spec.kind == kind]


def describe(distill: dict) -> str:
    """The distillation recipe in words, e.g. 'kd (T=4.0, alpha=0.9) + at (weight 1000.0, p=2.0)'."""
    methods = [distill["method"]] if isinstance(distill["method"], str) else distill["method"]
    parts = [METHODS[m].describe(distill) if m in METHODS else m for m in methods]
    if not set(of_kind("logit")) & set(methods):
        parts.insert(0, "CE")
    return " + ".join(parts)


def refusal(methods: list[str], offer: Offer) -> str | None:
    """The first of these methods' reasons not to serve what the run offers, or None when all can."""
    return next((why for why in (METHODS[m].refuse(offer) for m in methods) if why), None)
