"""How a dataset turns raw inputs into model inputs (its InputForm), so an unlabelled pool (data/unlabeled.py) and
the dataset's own loader prepare samples the same way; shared by the loaders without importing the pool reader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgedistill.errors import UserError


@dataclass
class InputForm:
    """How a dataset turns raw inputs into model inputs, so an unlabelled pool is prepared the same way.
    Each reader it has is a form of pool it accepts."""

    kind: str  # what the dataset reads, for the error that names what a pool may be: arrays, table, images, text
    arrays: Callable[[np.ndarray], Any] | None = None  # an .npz's x, as the loader's own arrays -> model inputs
    columns: list[str] | None = None  # a table's feature columns: a CSV pool must hold exactly these
    images: Callable[[Path, list[Path]], Any] | None = None  # image files of a folder -> model inputs
    texts: Callable[[list[str]], np.ndarray] | None = None  # one string per line -> token ids


def pixel_layout(x: np.ndarray, levels: int = 255) -> np.ndarray:
    """Pool images as (N, C, H, W) float pixels in [0, 1]: (N, H, W) gains a channel, NHWC is rearranged, integers
    are grey levels 0..levels (uint8: 0..255) and floats must already lie in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    return unit_pixels(x, levels)


def unit_pixels(x: np.ndarray, levels: int) -> np.ndarray:
    """Pixels as floats in [0, 1]; values outside the range their type promises are refused, since a pool on
    another scale than the labelled images would train silently on inputs unlike any of them."""
    lo, hi = float(x.min()), float(x.max())
    if x.dtype == np.uint8 and levels < 255:
        if hi <= levels:
            raise UserError(f"data.unlabeled: uint8 pixels are read as 8-bit (0..255), but the pool's lie in "
                            f"{lo:g}..{hi:g}, as the set's own grey levels 0..{levels} do; give those as int64, or "
                            f"as floats divided by {levels}")
        levels = 255
    if x.dtype.kind in "iu":
        if lo < 0 or hi > levels:
            raise UserError(f"data.unlabeled: integer pixels are read as grey levels 0..{levels}, as the labelled "
                            f"images', but the pool's lie in {lo:g}..{hi:g}; give integers 0..{levels}, or floats "
                            "in [0, 1] (8-bit pixels divided by 255)")
        return x.astype(np.float32) / np.float32(levels)
    if lo < 0 or hi > 1:
        raise UserError(f"data.unlabeled: float pixels must lie in [0, 1], as the labelled images' do, but the "
                        f"pool's lie in {lo:g}..{hi:g}; divide them by their full scale (255 for 8-bit pixels), or "
                        f"give integer grey levels 0..{levels}")
    return x.astype(np.float32)


def image_form(scale: Callable[[np.ndarray], np.ndarray], channels: int, levels: int = 255) -> InputForm:
    """A pool for a set of fixed-size images: an npz of pixels (integers: grey levels 0..levels) or a folder of image
    files (8- or 16-bit, by their depth, as packing reads them), then scaled as the set's own pixels were."""

    def arrays(x: np.ndarray) -> np.ndarray:
        return scale(pixel_layout(x, levels)).astype(np.float32)

    def images(folder: Path, files: list[Path]) -> np.ndarray:
        x = decoded_images(files, channels)  # uint8, or uint16 for 16-bit greyscale files
        return scale(unit_pixels(x, int(np.iinfo(x.dtype).max))).astype(np.float32)

    return InputForm("images", arrays=arrays, images=images)


def decoded_images(files: list[Path], channels: int) -> np.ndarray:
    """Image files as (N, C, H, W) uint8 at their own size, in memory: for small built-in image sets."""
    from edgedistill.data.packing import decode  # PIL, only when a pool of image files is read

    out = []
    for f in files:
        px = decode(f, None, "L" if channels == 1 else "RGB")
        if isinstance(px, str):
            raise UserError(f"data.unlabeled: {f}: {px}; remove or replace it")
        if out and px.shape != out[0].shape:
            raise UserError(f"data.unlabeled: {f} is {px.shape[1]}x{px.shape[2]} but {files[0]} is "
                            f"{out[0].shape[1]}x{out[0].shape[2]}; give images of one size")
        out.append(px)
    return np.stack(out)
