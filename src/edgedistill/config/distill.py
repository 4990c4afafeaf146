"""The distill section of the experiment schema: which methods, the settings every method shares, the teacher cache
and mixing. Each method's own section (distill.dkd, ...) is the settings class of its registry entry
(methods.METHODS), validated here against the registry, so adding a method touches its file and the registry only."""
from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from edgedistill.distill import METHODS, Offer, refusal
from edgedistill.errors import first_line
from edgedistill.strict import Strict


def takes_mixed_rows(method: str) -> bool:
    """Whether a method can learn from a mixed batch: one that files the teacher's outputs or features by sample (a
    bank of views, CRD's memory) refuses it, since a mixed row is two samples."""
    return METHODS[method].refuse(Offer(cache=True, mixed=True)) is None


MAX_VIEWS = 1024  # a bank's views; each is a teacher pass over the training split, built before training


class MixConfig(Strict):
    """Mixup or CutMix of every student batch, the teacher seeing the same mixed input (train/mix.py)."""

    kind: Literal["none", "mixup", "cutmix"] = Field(
        "none", description="mixup blends two inputs, cutmix pastes a box (a span of a sequence) of one into "
                            "another; both students are trained on the mixed batches and labels, and the teacher runs "
                            "live on them (Beyer et al., CVPR 2022)")
    alpha: float = Field(1.0, gt=0.0, description="the mixing share lam is drawn from Beta(alpha, alpha)")


class CacheConfig(Strict):
    """Teacher outputs for K fixed augmented views per sample, computed once (see train/cache.py)."""

    enabled: bool = Field(False, description="compute the teacher's outputs once instead of at every step")
    views: int = Field(8, ge=1, le=MAX_VIEWS, description="augmented views per training sample (1 when "
                       "augmentation is off)")
    max_bytes: int = Field(2_000_000_000, ge=0, description="disk budget of the bank (run folder's cache/); above "
                           "this, or above the free space of the run folder's disk, the teacher runs live, with a "
                           "warning")
    max_ram_bytes: int = Field(1_000_000_000, ge=0, description="of the bank, at most this much is held in memory "
                               "(logits first); the rest is read from disk per batch")


class DistillConfig(Strict):
    """Besides these keys, one section per registered method that has settings (distill.dkd, distill.crd, ...)."""

    model_config = ConfigDict(extra="allow")  # the methods' sections; any other key is refused by _sections
    method: str | list[str] = Field(
        "kd", description="one method or several combined: at most one logit method (kd, dkd, dist, nkd, "
                          "mvkd), plus feature methods on taps (fitnets, at, reviewkd) and/or crd (a relation "
                          "method, contrasting samples); these alone add plain CE; `edgedistill methods` lists them")
    temperature: float = Field(4.0, gt=0.0, description="kd, dkd, mvkd (dist and nkd have their own)")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="kd, mvkd: weight of the distillation term; 1-alpha "
                                                          "weighs CE")
    logit_standardization: bool = Field(
        False, description="kd, dkd, dist: z-score both logits per sample (minus its mean, over its std) before "
                           "the temperature (Sun et al., CVPR 2024); temperature and weights keep their meaning, "
                           "the paper's CIFAR runs use T 2 with KD weight 9")
    student_taps: list[str] | None = Field(
        None, description="student modules whose outputs feature methods read (default: the model's feature_taps)")
    teacher_taps: list[str] | None = Field(
        None, description="teacher modules paired with them, deepest with deepest (default: its feature_taps)")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    plugins: list[str] = Field(
        [], description="modules imported before this section is read, e.g. my_methods (on the Python path); each "
                        "adds its methods with edgedistill.distill.register_method")

    @property
    def methods(self) -> list[str]:
        return [self.method] if isinstance(self.method, str) else list(self.method)

    def settings(self, method: str) -> Strict | None:
        """The method's own section (a DKDConfig for dkd, ...), None for a method without settings."""
        return (self.model_extra or {}).get(method)

    def offer(self, **known: Any) -> Offer:
        """What this section offers the methods, with what else is `known` (processes, rows, classes, bank)."""
        return Offer(cache=self.cache.enabled, mixed=self.mix.kind != "none", views=self.cache.views,
                     max_bytes=self.cache.max_bytes, **known)

    def refusal(self, **known: Any) -> str | None:
        """The first method's reason not to serve this run, from what is `known` of it so far, or None."""
        return refusal(self.methods, self.offer(**known))

    def live(self, **update: Any) -> "DistillConfig":
        """The section for training against the live teacher, which has no cached views: a method that reads them
        (mvkd) becomes plain kd with the same temperature and alpha."""
        method = ["kd" if "views" in METHODS[m].needs else m for m in self.methods]
        return self.model_copy(update={"method": method, **update})

    def logit_only(self) -> "DistillConfig":
        """The logit method alone (kd when there is none), for a fine-tune where new adapters would start
        untrained (the QAT fine-tune); against the live teacher."""
        logit = [m for m in self.methods if METHODS[m].kind == "logit"] or ["kd"]
        return self.model_copy(update={"method": logit}).live()

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Import the plugins, then validate each registered method's section (filling in its defaults) and refuse
        any other key, each error at its own key as pydantic names it."""
        if not isinstance(data, dict):
            return data
        import_plugins(data.get("plugins") or [])
        clash = next((n for n, spec in METHODS.items() if spec.settings is not None and n in cls.model_fields), None)
        if clash:
            raise ValueError(f"the method {clash!r} has settings, but distill.{clash} is a key of its own; register "
                             "the method under another name")
        data, errors = dict(data), []
        for key in [k for k in data if k not in cls.model_fields]:
            spec = METHODS.get(key)
            if spec is None or spec.settings is None:
                errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=data[key]))
                continue
            try:
                data[key] = spec.settings.model_validate(data[key])
            except ValidationError as err:
                errors += [InitErrorDetails(type=e["type"], loc=(key, *e["loc"]), input=e["input"],
                                            **({"ctx": e["ctx"]} if "ctx" in e else {})) for e in err.errors()]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for name, spec in METHODS.items():
            if spec.settings is not None and name not in data:
                data[name] = spec.settings()
        return data

    @model_validator(mode="after")
    def _one_logit_method(self) -> "DistillConfig":
        m = self.methods
        if not m:
            raise ValueError("name at least one method")
        unknown = [name for name in m if name not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)} "
                             "(`edgedistill methods` lists them)")
        if len(set(m)) != len(m):
            raise ValueError(f"method lists {m} with a repeat")
        logit = [name for name in m if METHODS[name].kind == "logit"]
        if len(logit) > 1:
            raise ValueError(f"{' and '.join(logit)} are logit methods; choose one")
        why = self.refusal()  # first: a method that cannot mix at all must not be sent to turn the cache off
        if why:
            raise ValueError(why)
        if self.mix.kind != "none" and self.cache.enabled:
            raise ValueError(f"mix.kind {self.mix.kind!r} needs the teacher's outputs on every mixed batch, which "
                             "the cache of fixed views cannot give; set distill.cache.enabled: false (the teacher "
                             "then runs live)")
        if self.logit_standardization and not any(METHODS[name].standardize for name in logit):
            able = ", ".join(name for name, spec in METHODS.items() if spec.standardize)
            raise ValueError(f"distill.logit_standardization applies to {able}, not to "
                             f"{logit[0] if logit else 'plain CE'}; turn it off or pick one of those")
        return self


def import_plugins(modules: Any) -> None:
    """Import each module named in distill.plugins, so that the methods it registers can be named."""
    for name in modules if isinstance(modules, list) else []:
        try:
            importlib.import_module(str(name))
        except Exception as exc:  # a user's module: any error in it is theirs to fix
            raise ValueError(f"distill.plugins: cannot import {name!r} ({first_line(exc)}); put its folder on the "
                             "Python path (PYTHONPATH) or fix the module") from None
