"""What a distillation method's registry entry holds (`MethodSpec`) and what a run offers a method when a check
asks whether it can serve it (`Offer`), with the words and refusals the method files share. Below both the method
files and the registry (methods.py), so neither imports the other back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Offer:
    """What the run offers its methods, as far as it is known when a check runs: the config alone when it is
    validated, then the processes and the data before anything is written, then whether the teacher cache was made."""

    cache: bool = False  # distill.cache.enabled
    mixed: bool = False  # distill.mix is on: a row is two samples blended
    views: int = 1  # distill.cache.views
    max_bytes: int | None = None  # distill.cache.max_bytes
    processes: int = 1  # torchrun's world size
    rows: int | None = None  # rows a distilled model trains on, the unlabelled pool's included
    classes: int | None = None
    bank: bool | None = None  # once the cache was asked for: whether it was made (False: it would not fit)
    run_dir: str | None = None  # where a refused run can be resumed from


@dataclass(frozen=True)
class MethodSpec:
    kind: str  # "logit": replaces the hard-label loss; "feature": added on top, reads tap features; "relation":
    # added on top like "feature", but relates samples to one another (CRD: a memory bank of every training sample)
    build: Callable[[Any, Any, float], Any]  # (its settings or None, the distill config, label smoothing) -> loss
    describe: Callable[[dict], str]  # the recipe in words, from the distill section of a config or metrics.json
    paper: str
    settings: type | None = None  # its own section, distill.<name>: a Strict pydantic model with defaults
    # what it reads of the teacher: "logits", "features" (tap outputs: a teacher that is not a torch module, such as
    # an ONNX file, cannot give them), "views" (logits on every cached augmented view: needs distill.cache)
    needs: frozenset[str] = frozenset({"logits"})
    standardize: bool = False  # accepts distill.logit_standardization (z-scored logits, Sun et al., CVPR 2024)
    refuse: Callable[[Offer], str | None] = lambda offer: None  # why it cannot serve what the run offers, or None


def warmup_words(epochs: int | None) -> str:
    """A warm-up as the report says it; a metrics.json from before the warm-up had none."""
    return ", no warm-up" if epochs == 0 else ", warm-up 1/12 of epochs" if epochs is None else f", warm-up {epochs}"


def per_sample(name: str, offer: Offer) -> str | None:
    """The refusal of a method that files the teacher's outputs or features by sample (a bank of views, CRD's
    memory): a row of a mixed batch is two samples."""
    if offer.mixed:
        return (f"{name} keeps the teacher's outputs or features per sample, but a mixed row is two samples; choose "
                "another method or set distill.mix.kind: none")
    return None
