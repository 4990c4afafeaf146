"""Batch augmentation as two steps: draw each sample's parameters (crop offsets, flip), then apply them.

Split so that the teacher-output cache can store a fixed bank of views as parameters (three small integers per
sample and view) and rebuild any view exactly, instead of storing augmented images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.config import AugmentConfig


def augment_params(shape: tuple[int, ...], cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) int16: row offset, column offset (after zero padding by crop_padding), flip flag."""
    n, rank = shape[0], len(shape)
    params = torch.zeros(n, 3, dtype=torch.int16)
    p = cfg.crop_padding
    if p > 0 and rank in (3, 4):
        if rank == 4:
            params[:, 0] = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        params[:, 1] = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    if cfg.hflip and rank == 4:
        params[:, 2] = torch.rand(n, generator=gen) < 0.5
    return params


def apply_augment(x: torch.Tensor, params: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Random crop after zero padding (images and sequences) and horizontal flip (images), as `params` say."""
    n, p = x.shape[0], cfg.crop_padding
    params = params.to(x.device).long()
    if p > 0 and x.dim() in (3, 4):
        idx_n = torch.arange(n, device=x.device)
        chans = torch.arange(x.shape[1], device=x.device)
        if x.dim() == 4:
            h, w = x.shape[-2:]
            padded = F.pad(x, (p, p, p, p))
            rows = (params[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (params[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = padded[idx_n[:, None, None, None], chans[None, :, None, None], rows, cols]
        else:
            length = x.shape[-1]
            padded = F.pad(x, (p, p))
            cols = (params[:, 1, None] + torch.arange(length, device=x.device))[:, None, :]
            x = padded[idx_n[:, None, None], chans[None, :, None], cols]
    if cfg.hflip and x.dim() == 4:
        x = torch.where(params[:, 2, None, None, None].bool(), x.flip(-1), x)
    return x


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    return apply_augment(x, augment_params(tuple(x.shape), cfg, gen), cfg)
