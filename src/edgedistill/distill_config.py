"""The distill section of the experiment schema: which methods, each method's own settings, and the teacher
cache. Its own module so that adding a method touches its settings here, not the rest of the schema."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgedistill.methods import METHODS
from edgedistill.strict import Strict


def takes_mixed_rows(method: str) -> bool:
    """Whether a method can learn from a mixed batch: one that files the teacher's outputs or features by sample (a
    bank of views, CRD's memory) cannot, since a mixed row is two samples."""
    return "views" not in METHODS[method].needs and method != "crd"


class DKDConfig(Strict):
    """Decoupled KD weights (mdistiller's defaults for CIFAR-100: alpha 1, beta 8, CE weight 1)."""

    alpha: float = Field(1.0, ge=0.0, description="weight of the target-class term (TCKD)")
    beta: float = Field(8.0, ge=0.0, description="weight of the non-target term (NCKD)")
    ce_weight: float = Field(1.0, ge=0.0)
    warmup_epochs: int | None = Field(
        None, ge=0, description="TCKD and NCKD ramp in over this many epochs (factor epoch/warmup, 1-based), as "
                                "published; default: the first 1/12 of the epochs, at least 1 (mdistiller: 20 of "
                                "240); 0 turns the ramp off")


class DISTConfig(Strict):
    """DIST's weights (Huang et al. 2022): the authors' ImageNet recipe, T 1 with beta = gamma = 2 (their configs
    weigh DIST(beta=1, gamma=1) by kd_loss_weight 2); their CIFAR-100 recipe is T 4 with the same weights."""

    temperature: float = Field(1.0, gt=0.0, description="DIST's own temperature (distill.temperature is KD's)")
    beta: float = Field(2.0, ge=0.0, description="weight of the inter-class relation (per-sample correlation)")
    gamma: float = Field(2.0, ge=0.0, description="weight of the intra-class relation (per-class correlation)")
    ce_weight: float = Field(1.0, ge=0.0)


class NKDConfig(Strict):
    """Normalized KD (Yang et al. 2023): the authors' defaults."""

    temperature: float = Field(1.0, gt=0.0, description="temperature of the non-target term (the target term "
                                                         "uses 1)")
    gamma: float = Field(1.5, ge=0.0, description="weight of the non-target term")




class FitNetsConfig(Strict):
    weight: float = Field(100.0, ge=0.0, description="weight of the hint MSE (RepDistiller uses 100); the hint's "
                          "scale follows the teacher's features: from a width-64 ResNet on Fashion-MNIST, 100 "
                          "diverged at lr 0.1 and 1 trained")


class ATConfig(Strict):
    weight: float = Field(1000.0, ge=0.0, description="weight of the attention-map loss (RepDistiller uses 1000)")
    p: float = Field(2.0, gt=0.0, description="attention map: channel mean of |F|^p")


class ReviewKDConfig(Strict):
    """ReviewKD (Chen et al., CVPR 2021): weight 1 as in the authors' ImageNet code and mdistiller's ImageNet
    config, ramped in over the first 1/12 of the epochs (mdistiller's 20 of 240 on CIFAR-100). Their CIFAR-100
    recipes weigh it more: 5 in mdistiller's config and for most of the authors' pairs (8, 0.6 and 1 for others)."""

    weight: float = Field(1.0, ge=0.0, description="weight of the hierarchical context loss, summed over tap pairs "
                          "(CIFAR-100 recipes: 5)")
    warmup_epochs: int | None = Field(
        None, ge=0, description="the weight ramps in as min(epoch / warmup, 1) (1-based epochs); default: the "
                                "first 1/12 of the epochs, at least 1; 0 turns the ramp off")


class CRDConfig(Strict):
    """Contrastive representation distillation (Tian et al., ICLR 2020): RepDistiller's CIFAR-100 recipe, CRD
    weight 0.8 beside CE weight 1 (method: crd alone, or with kd), except K: RepDistiller draws 16384 negatives, we
    4096, since each side holds a (batch, K + 1, feat_dim) float32 gather of bank rows for the backward pass (at
    batch 128 and dim 128: 0.27 GB per side at 4096, 1.07 GB at 16384)."""

    weight: float = Field(0.8, ge=0.0, description="weight of the NCE loss (student side plus teacher side)")
    feat_dim: int = Field(128, ge=1, description="embedding size of both projection heads and memory banks")
    nce_k: int = Field(4096, ge=1, description="negatives per sample (capped at the training size - 1); "
                       "RepDistiller's default is 16384")
    nce_t: float = Field(0.07, gt=0.0, description="temperature of the embedding scores")
    momentum: float = Field(0.5, ge=0.0, lt=1.0, description="memory bank update: m <- momentum*m + (1-momentum)*v")


MAX_VIEWS = 1024  # a bank's views; each is a teacher pass over the training split, built before training


class MixConfig(Strict):
    """Mixup or CutMix of every student batch, the teacher seeing the same mixed input (distill/mix.py)."""

    kind: Literal["none", "mixup", "cutmix"] = Field(
        "none", description="mixup blends two inputs, cutmix pastes a box (a span of a sequence) of one into "
                            "another; both students are trained on the mixed batches and labels, and the teacher runs "
                            "live on them (Beyer et al., CVPR 2022)")
    alpha: float = Field(1.0, gt=0.0, description="the mixing share lam is drawn from Beta(alpha, alpha)")


class CacheConfig(Strict):
    """Teacher outputs for K fixed augmented views per sample, computed once (see distill/cache.py)."""

    enabled: bool = Field(False, description="compute the teacher's outputs once instead of at every step")
    views: int = Field(8, ge=1, le=MAX_VIEWS, description="augmented views per training sample (1 when "
                       "augmentation is off)")
    max_bytes: int = Field(2_000_000_000, ge=0, description="disk budget of the bank (run folder's cache/); above "
                           "this, or above the free space of the run folder's disk, the teacher runs live, with a "
                           "warning")
    max_ram_bytes: int = Field(1_000_000_000, ge=0, description="of the bank, at most this much is held in memory "
                               "(logits first); the rest is read from disk per batch")


class DistillConfig(Strict):
    method: str | list[str] = Field(
        "kd", description="one method or several combined: at most one logit method (kd, dkd, dist, nkd, "
                          "mvkd), plus feature methods on taps (fitnets, at, reviewkd) and/or crd (a relation "
                          "method, contrasting samples); these alone add plain CE; `edgedistill methods` lists them")
    temperature: float = Field(4.0, gt=0.0, description="kd, dkd, mvkd (dist and nkd have their own)")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="kd, mvkd: weight of the distillation term; 1-alpha "
                                                          "weighs CE")
    dkd: DKDConfig = Field(default_factory=DKDConfig)
    dist: DISTConfig = Field(default_factory=DISTConfig)
    nkd: NKDConfig = Field(default_factory=NKDConfig)
    logit_standardization: bool = Field(
        False, description="kd, dkd, dist: z-score both logits per sample (minus its mean, over its std) before "
                           "the temperature (Sun et al., CVPR 2024); temperature and weights keep their meaning, "
                           "the paper's CIFAR runs use T 2 with KD weight 9")
    fitnets: FitNetsConfig = Field(default_factory=FitNetsConfig)
    at: ATConfig = Field(default_factory=ATConfig)
    reviewkd: ReviewKDConfig = Field(default_factory=ReviewKDConfig)
    crd: CRDConfig = Field(default_factory=CRDConfig)
    student_taps: list[str] | None = Field(
        None, description="student modules whose outputs feature methods read (default: the model's feature_taps)")
    teacher_taps: list[str] | None = Field(
        None, description="teacher modules paired with them, deepest with deepest (default: its feature_taps)")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    mix: MixConfig = Field(default_factory=MixConfig)

    @property
    def methods(self) -> list[str]:
        return [self.method] if isinstance(self.method, str) else list(self.method)

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
        viewed = [name for name in m if "views" in METHODS[name].needs]
        if viewed and not self.cache.enabled:
            raise ValueError(f"{viewed[0]} reads the teacher's logits on every cached view: set "
                             "distill.cache.enabled: true")
        if self.mix.kind != "none":
            self._mixable()
        if self.logit_standardization and not any(METHODS[name].standardize for name in logit):
            able = ", ".join(name for name, spec in METHODS.items() if spec.standardize)
            raise ValueError(f"distill.logit_standardization applies to {able}, not to "
                             f"{logit[0] if logit else 'plain CE'}; turn it off or pick one of those")
        return self

    def _mixable(self) -> None:
        """Mixing needs the teacher's outputs on each mixed batch, which no bank of fixed views holds, and a row
        of a mixed batch is two samples, which a bank keyed by sample cannot file."""
        if self.cache.enabled:
            raise ValueError(f"mix.kind {self.mix.kind!r} needs the teacher's outputs on every mixed batch, which "
                             "the cache of fixed views cannot give; set distill.cache.enabled: false (the teacher "
                             "then runs live)")
        keyed = [name for name in self.methods if not takes_mixed_rows(name)]
        if keyed:
            raise ValueError(f"{keyed[0]} keeps the teacher's outputs or features per sample, but a mixed row is "
                             "two samples; choose another method or set distill.mix.kind: none")
