"""Contrastive representation distillation (Tian, Krishnan, Isola, ICLR 2020): the student's embedding of a sample
must pick out the teacher's embedding of the same sample against K others, and the other way round.

Formulation: the paper's NCE objective (a binary critic h = P / (P + K/N), noise-contrastive estimation) over a
contrast memory, as the authors' code computes it (HobbitLong/RepDistiller: crd/memory.py ContrastMemory,
crd/criterion.py ContrastLoss). The deepest tap of each model is globally average-pooled, projected to `feat_dim`
and L2-normalised.
Each side keeps a memory bank of one unit vector per training sample. The student's embedding is scored against the
teacher's bank rows for the positive (the same sample) and K negatives drawn uniformly from the other samples:
P(i|v) = exp(v.m_i / T) / Z, with Z = N * mean(exp(v.m / T)) estimated once, at the first batch. Each score is a
binary NCE term against noise of probability m*Pn = K/N:
    loss_s = -(1/B) sum_b [ log(P_pos / (P_pos + K/N)) + sum_k log((K/N) / (P_neg_k + K/N)) ],
and loss_t likewise for the teacher's embedding against the student's bank; the method adds weight * (loss_s + loss_t).
After scoring, the banks move toward the batch's embeddings, m <- normalise(momentum * m + (1 - momentum) * v), at
the batch's rows only. The banks are buffers of the method's own module, so a resume restores them.

Differences from RepDistiller: banks start as random unit vectors, negatives are drawn uniformly over all other
samples (RepDistiller's CIFAR loader draws them from other classes), and K defaults to 4096 where RepDistiller's
is 16384 (CRDConfig says why).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import FeatureMethod
from edgedistill.distill.spec import Offer, per_sample
from edgedistill.strict import Strict

EPS = 1e-7  # as RepDistiller's ContrastLoss


class CRDConfig(Strict):
    """distill.crd: RepDistiller's CIFAR-100 recipe, CRD weight 0.8 beside CE weight 1 (method: crd alone, or with
    kd), except K: RepDistiller draws 16384 negatives, we 4096, since each side holds a (batch, K + 1, feat_dim)
    float32 gather of bank rows for the backward pass (at batch 128 and dim 128: 0.27 GB per side at 4096, 1.07 GB
    at 16384)."""

    weight: float = Field(0.8, ge=0.0, description="weight of the NCE loss (student side plus teacher side)")
    feat_dim: int = Field(128, ge=1, description="embedding size of both projection heads and memory banks")
    nce_k: int = Field(4096, ge=1, description="negatives per sample (capped at the training size - 1); "
                       "RepDistiller's default is 16384")
    nce_t: float = Field(0.07, gt=0.0, description="temperature of the embedding scores")
    momentum: float = Field(0.5, ge=0.0, lt=1.0, description="memory bank update: m <- momentum*m + (1-momentum)*v")


def pooled(f: torch.Tensor) -> torch.Tensor:
    """A tap (N, C, *spatial) averaged over its positions to (N, C); a flat (N, C) is kept."""
    return f.flatten(2).mean(2) if f.dim() > 2 else f


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """RepDistiller's ContrastLoss: `scores` (B, 1 + K) are normalised P(i|v), the positive first."""
    noise = (scores.shape[1] - 1) / n_data  # m * Pn: K negatives, noise distribution uniform 1/N
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + EPS))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def build(settings: CRDConfig, distill, label_smoothing: float) -> "CRD":
    return CRD(**settings.model_dump())


def describe(d: dict) -> str:
    c = d["crd"]
    return f"crd (weight {c['weight']}, dim {c['feat_dim']}, K={c['nce_k']}, T={c['nce_t']})"


def refuse(offer: Offer) -> str | None:
    """The memory bank is one process's, its rows not gathered across processes, and it is keyed by sample."""
    if offer.processes > 1:
        return ("distill.method: crd keeps its memory bank in one process; run it without torchrun, or choose "
                "another method")
    return per_sample("crd", offer)


class Embed(nn.Module):
    """A linear projection to `feat_dim`, L2-normalised (RepDistiller's Embed)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(pooled(f)).float(), dim=1)


class ContrastModule(nn.Module):
    """The method's own state: both projection heads, both banks and the two normalisers Z (-1 until set)."""

    def __init__(self, s_dim: int, t_dim: int, feat_dim: int, n_data: int, generator: torch.Generator):
        super().__init__()
        self.embed_s, self.embed_t = Embed(s_dim, feat_dim), Embed(t_dim, feat_dim)
        self.register_buffer("memory_s", F.normalize(torch.randn(n_data, feat_dim, generator=generator), dim=1))
        self.register_buffer("memory_t", F.normalize(torch.randn(n_data, feat_dim, generator=generator), dim=1))
        self.register_buffer("z", torch.full((2,), -1.0))  # Z of the student's scores, then of the teacher's


class CRD(FeatureMethod):
    """Reads the deepest paired tap and the batch's row indices; `build` needs `num_train` (set by setup)."""

    wants = frozenset({"index"})

    def __init__(self, weight: float = 0.8, feat_dim: int = 128, nce_k: int = 4096, nce_t: float = 0.07,
                 momentum: float = 0.5, seed: int | None = None):
        self.weight, self.feat_dim, self.nce_k, self.nce_t, self.momentum = weight, feat_dim, nce_k, nce_t, momentum
        self.seed = seed  # None: the run's, read at build time (the student was just built under it)
        self.generator = torch.Generator()  # banks' start and negatives: the global RNG untouched
        self.module: ContrastModule | None = None

    def build(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> ContrastModule:
        n = self.num_train
        if n is None or n < 2:
            raise ValueError(f"CRD needs the training split's size (at least 2 samples) for its memory bank, got "
                             f"{n}; pass num_train to setup")
        if self.seed is None:
            self.seed = torch.initial_seed()
        self.generator.manual_seed(self.seed)
        self.module = ContrastModule(pooled(student_feats[-1]).shape[1], pooled(teacher_feats[-1]).shape[1],
                                     self.feat_dim, n, self.generator)
        return self.module

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Negatives drawn from (seed, epoch) alone, so a resumed run draws what an unbroken one would."""
        self.generator.manual_seed(hash((self.seed, epoch)) & (2**63 - 1))

    @property
    def k(self) -> int:
        return min(self.nce_k, self.module.memory_s.shape[0] - 1)

    def negatives(self, index: torch.Tensor) -> torch.Tensor:
        """(B, K) rows drawn uniformly from the N - 1 samples other than each row's own."""
        pos = index.cpu()[:, None]
        draw = torch.randint(0, self.module.memory_s.shape[0] - 1, (len(pos), self.k), generator=self.generator)
        return (draw + (draw >= pos).long()).to(index.device)

    def scores(self, v: torch.Tensor, memory: torch.Tensor, rows: torch.Tensor, side: int) -> torch.Tensor:
        """P(i|v) for the (B, 1 + K) bank rows, Z set from this batch the first time."""
        out = torch.exp(torch.bmm(memory[rows], v[:, :, None]).squeeze(2) / self.nce_t)
        z = self.module.z
        if z[side] < 0 and torch.isfinite(out).all():  # a non-finite first batch must not fix Z for good
            z[side] = out.detach().mean() * memory.shape[0]
        return out / z[side].clone()  # a copy: setting the other side's Z must not touch what backward keeps

    @torch.no_grad()
    def update(self, memory: torch.Tensor, index: torch.Tensor, v: torch.Tensor) -> None:
        if torch.isfinite(v).all():  # a batch the trainer will skip must not poison the bank
            memory[index] = F.normalize(self.momentum * memory[index] + (1 - self.momentum) * v, dim=1)

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor], *,
                 index: torch.Tensor, negatives: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.module
        if m is None:
            raise RuntimeError("CRD.build must run before the loss: it makes the memory bank")
        index = index.long()
        v_s, v_t = m.embed_s(student_feats[-1]), m.embed_t(teacher_feats[-1])
        neg = self.negatives(index) if negatives is None else negatives.long().to(index.device)
        rows = torch.cat([index[:, None], neg], dim=1)
        n = m.memory_s.shape[0]
        with torch.autocast(v_s.device.type, enabled=False):
            loss = (nce_loss(self.scores(v_s, m.memory_t, rows, 0), n)  # student vs the teacher's bank
                    + nce_loss(self.scores(v_t, m.memory_s, rows, 1), n))  # teacher vs the student's bank
        self.update(m.memory_s, index, v_s.detach())
        self.update(m.memory_t, index, v_t.detach())
        return {"crd": self.weight * loss}
