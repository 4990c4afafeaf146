"""Multi-view KD, edgedistill's own method (not a published one): besides the teacher on the view the student sees,
distil toward the teacher's prediction averaged over every cached augmented view of the sample, a steadier target
than any one view. It is not MLKD (Jin et al., CVPR 2023): no sum over several temperatures, no class- or
batch-level alignment and no confidence mask.

With p^T = softmax(z/T), v the view of this step and K the cached views of the sample:
  loss = (1 - alpha) * CE(z_s, y)
         + alpha * T^2 / 2 * [ KL(p^T(z_t[v]) || p^T(z_s)) + KL(mean_k p^T(z_t[k]) || p^T(z_s)) ]
averaged over the batch. The views come from the teacher cache (distill.cache.enabled); with augmentation off
the cache keeps one view and the loss is plain KD.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.distill.kd import kd_kl
from edgedistill.distill.method import Method
from edgedistill.distill.spec import Offer
from edgedistill.distill.targets import labeled_ce


def mean_view_kl(student_logits: torch.Tensor, views: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(mean over views of softmax(teacher/T) || softmax(student/T)) * T^2, a batch mean; views is (B, K, C)."""
    p_mean = F.softmax(views / temperature, dim=2).mean(dim=1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p_s, p_mean, reduction="batchmean") * temperature**2


def build(settings: None, distill, label_smoothing: float) -> "MultiViewKD":
    return MultiViewKD(distill.temperature, distill.alpha, label_smoothing)


def describe(d: dict) -> str:
    return f"mvkd (T={d['temperature']}, alpha={d['alpha']}, {d.get('cache', {}).get('views', '?')} cached views)"


def refuse(offer: Offer) -> str | None:
    """Every view's logits come from the teacher cache alone: mixed rows (asked first, since mixing needs the cache
    off), no cache, a bank that cannot fit."""
    if offer.mixed:
        return ("mvkd reads the teacher's logits on cached views of unmixed samples, so it cannot mix: set "
                "distill.mix.kind: none, or choose another method")
    if not offer.cache:
        return "mvkd reads the teacher's logits on every cached view: set distill.cache.enabled: true"
    if offer.rows is not None and offer.classes is not None and offer.max_bytes is not None:
        logits_bytes = offer.rows * offer.views * offer.classes * 4  # float32, K views per row
        if logits_bytes > offer.max_bytes:
            return (f"distill.cache.max_bytes: mvkd reads the teacher's logits on every cached view, which need "
                    f"{logits_bytes / 1e9:.2f} GB for {offer.views} views; raise it or lower distill.cache.views")
    if offer.bank is False:
        return ("mvkd reads the teacher's logits on every cached view, but the bank would exceed "
                "distill.cache.max_bytes or the disk's free space; free some space and continue with "
                f"`edgedistill run --resume {offer.run_dir}`, or start again with a larger max_bytes or fewer "
                "distill.cache.views")
    return None


class MultiViewKD(Method):
    wants = frozenset({"views"})

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0):
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor,
                 views: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if teacher_logits is None or views is None:
            raise ValueError("MultiViewKD needs the teacher's logits on this view and on every cached view")
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        half = self.alpha / 2
        return {"ce": (1.0 - self.alpha) * ce,
                "kd": half * kd_kl(student_logits, teacher_logits, self.temperature),
                "kd_views": half * mean_view_kl(student_logits, views.float(), self.temperature)}
