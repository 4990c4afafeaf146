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


def pixel_layout(x: np.ndarray) -> np.ndarray:
    """Pool images as (N, C, H, W) float pixels in [0, 1]: (N, H, W) gains a channel, NHWC is rearranged, uint8 is
    divided by 255 (floats are taken as already in [0, 1])."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)


def image_form(scale: Callable[[np.ndarray], np.ndarray], channels: int) -> InputForm:
    """A pool for a set of fixed-size images: an npz of pixels or a folder of image files, then scaled as the set's
    own pixels were."""

    def arrays(x: np.ndarray) -> np.ndarray:
        return scale(pixel_layout(x)).astype(np.float32)

    return InputForm("images", arrays=arrays, images=lambda folder, files: arrays(decoded_images(files, channels)))


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
