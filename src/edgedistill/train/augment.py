"""Batch augmentation as two steps: draw each sample's parameters (crop offsets, flip), then apply them.

Split so that the teacher-output cache can store a fixed bank of views as parameters (a few numbers per sample
and view) and rebuild any view exactly, instead of storing augmented images. Camera images add a random resized
crop (one affine grid per sample, the flip folded in) and colour jitter, applied to the pixels in [0, 1] through
the inputs' channel statistics (`stats`), since the inputs arrive standardised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.config import AugmentConfig


RATIO = (3 / 4, 4 / 3)  # the resized crop's aspect ratios, as torchvision's RandomResizedCrop draws them
# parameter columns: crop offsets and flip, then the resized crop's centre and size, then the jitter factors
ROW, COL, FLIP, CX, CY, CW, CH, BRIGHT, CONTRAST, SATURATION = range(10)


def augment_params(shape: tuple[int, ...], cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) float32: row offset, column offset (after zero padding by crop_padding), flip flag; (n, 10) with a
    resized crop or colour jitter. Draws for switched-off steps are never made, so old recipes draw as before."""
    n, rank = shape[0], len(shape)
    camera = rank == 4 and (cfg.resized_crop is not None or cfg.color_jitter > 0)
    params = torch.zeros(n, 10 if camera else 3)
    p = cfg.crop_padding
    if p > 0 and rank in (3, 4):
        if rank == 4:
            params[:, 0] = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        params[:, 1] = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    if cfg.hflip and rank == 4:
        params[:, 2] = torch.rand(n, generator=gen) < 0.5
    if camera:
        params[:, CX:] = torch.tensor([0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    if camera and cfg.resized_crop is not None:
        params[:, CX:CH + 1] = resized_crop_boxes(n, cfg.resized_crop, gen)
    if camera and cfg.color_jitter > 0:
        j = cfg.color_jitter
        params[:, BRIGHT:] = 1 - j + 2 * j * torch.rand(n, 3, generator=gen)
    return params


def resized_crop_boxes(n: int, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """(n, 4): centre x, centre y, width, height as fractions of the image: a share of the area from `scale`, an
    aspect ratio log-uniform in RATIO, clipped to the image, and a centre that keeps the box inside it."""
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen)
    log_r = torch.log(torch.tensor(RATIO))
    ratio = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(n, generator=gen))
    w, h = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
    u = torch.rand(n, 2, generator=gen)
    return torch.stack([w / 2 + u[:, 0] * (1 - w), h / 2 + u[:, 1] * (1 - h), w, h], 1)


def resized_crop(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Each sample's box resampled bilinearly to the full size, mirrored where its flip flag is set."""
    sign = 1 - 2 * params[:, FLIP]
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = params[:, CW] * sign, 2 * params[:, CX] - 1
    theta[:, 1, 1], theta[:, 1, 2] = params[:, CH], 2 * params[:, CY] - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x: torch.Tensor, params: torch.Tensor, stats: tuple) -> torch.Tensor:
    """Brightness, contrast and saturation (RGB) factors applied to the pixels in [0, 1], then standardised back."""
    mean, std = (torch.as_tensor(s, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1) for s in stats)
    px = x * std + mean
    f = params[:, BRIGHT:].to(x.dtype)[:, :, None, None, None]
    px = px * f[:, 0]
    grey = px.mean(dim=(1, 2, 3), keepdim=True) if px.shape[1] != 3 else \
        (0.299 * px[:, :1] + 0.587 * px[:, 1:2] + 0.114 * px[:, 2:]).mean(dim=(2, 3), keepdim=True)
    px = (px - grey) * f[:, 1] + grey
    if px.shape[1] == 3:
        luma = 0.299 * px[:, :1] + 0.587 * px[:, 1:2] + 0.114 * px[:, 2:]
        px = (px - luma) * f[:, 2] + luma
    return (px.clamp(0, 1) - mean) / std


def apply_augment(x: torch.Tensor, params: torch.Tensor, cfg: AugmentConfig,
                  stats: tuple | None = None) -> torch.Tensor:
    """Random crop after zero padding (images and sequences), then a resized crop (camera images) and horizontal
    flip (images), then colour jitter, as `params` say; `stats` (channel mean, std) are needed for the jitter."""
    n, p = x.shape[0], cfg.crop_padding
    camera = params.shape[1] > 3
    fparams = params.to(x.device).float()
    params = fparams.long()
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
    if camera and cfg.resized_crop is not None:
        x = resized_crop(x, fparams)  # the flip rides on the crop's grid
    elif cfg.hflip and x.dim() == 4:
        x = torch.where(params[:, 2, None, None, None].bool(), x.flip(-1), x)
    if camera and cfg.color_jitter > 0:
        if stats is None:
            raise ValueError("colour jitter needs the inputs' channel mean and std")
        x = color_jitter(x, fparams, stats)
    return x


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, stats: tuple | None = None
                  ) -> torch.Tensor:
    return apply_augment(x, augment_params(tuple(x.shape), cfg, gen), cfg, stats)
