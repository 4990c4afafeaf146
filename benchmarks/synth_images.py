"""A SYNTHETIC RGB image-classification folder, rendered procedurally, to measure how the image pipeline scales.

    python benchmarks/synth_images.py ROOT [--n 100000] [--size 96] [--classes 10] [--seed 0] [--workers N]

It measures scale (packing, streaming, memory, images per second), not accuracy: no photo set of that size exists
offline here, and an accuracy on these pictures says nothing about real photos. Each class is one kind of object
(circle, square, triangle, star, ring, cross, striped patch, checker patch, ellipse pair, hexagon, crescent, arrow,
glyph letter) drawn at a random position, scale, rotation and colour over a random background (gradients, smooth
and blocky noise), with low-contrast clutter of the other kinds, occasional occluders and pixel noise, so a small
CNN should learn it well above chance without reaching 100% at once (aimed at, not yet measured).

Writes real PNG files, ROOT/train/<class>/<i>.png and ROOT/test/<class>/<i>.png (class = i mod classes), and then
ROOT/synth.json with the parameters ("complete": false while writing); a ROOT whose synth.json holds the same
parameters is left as it is. Each image is drawn from its own generator seeded by (seed, split, index), so the
files do not depend on --workers.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

VERSION = 2  # bump when the rendering changes, so an old folder is not reused as if it were the new one
KINDS = ("circle", "square", "triangle", "star", "ring", "cross", "stripes", "checker", "ellipse_pair", "hexagon",
         "crescent", "arrow", "glyph")
SPLITS = ("train", "test")
MARKER = "synth.json"


# ---- shapes: signed distance in units of the shape's radius (negative inside), on rotated local coordinates ----

def _polygon(u: np.ndarray, v: np.ndarray, sides: int, radius: float = 1.0) -> np.ndarray:
    """A regular convex polygon as the largest of its edge half-planes (exact inside, close enough outside)."""
    d = np.full(u.shape, -np.inf, dtype=np.float32)
    apothem = radius * math.cos(math.pi / sides)
    for k in range(sides):
        a = 2 * math.pi * (k + 0.5) / sides
        d = np.maximum(d, u * math.cos(a) + v * math.sin(a) - apothem)
    return d


def _box(u: np.ndarray, v: np.ndarray, hu: float, hv: float) -> np.ndarray:
    return np.maximum(np.abs(u) - hu, np.abs(v) - hv)


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    """Distance to a boundary whose radius zigzags between 1 and `inner` around the centre."""
    theta = np.arctan2(v, u) * (points / (2 * math.pi))
    zig = np.abs(theta - np.floor(theta) - 0.5) * 2.0  # 1 at the tips, 0 between them
    return (np.sqrt(u * u + v * v) - (inner + (1.0 - inner) * zig)) * 0.6


@lru_cache(maxsize=4)
def _glyph_mask(letter: str = "G") -> np.ndarray:
    """The letter drawn once with PIL's default font, cropped to its ink, as a float mask in [0, 1]."""
    try:
        font = ImageFont.load_default(size=64)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    img = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(img).text((8, 4), letter, fill=255, font=font)
    mask = np.asarray(img, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(mask > 0.1)
    return mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _glyph_coverage(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample the glyph mask at local coordinates in [-1, 1] (nearest pixel), zero outside it."""
    mask = _glyph_mask()
    h, w = mask.shape
    aspect = w / h
    col = np.round((u / aspect + 1.0) * 0.5 * (w - 1)).astype(np.int64)
    row = np.round((v + 1.0) * 0.5 * (h - 1)).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = np.zeros(u.shape, dtype=np.float32)
    out[inside] = mask[row[inside], col[inside]]
    return out


def shape_coverage(kind: str, u: np.ndarray, v: np.ndarray, px: float, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one object; `px` is the size of a pixel in local units."""
    if kind == "glyph":
        return _glyph_coverage(u, v)
    if kind == "stripes":
        freq = rng.uniform(2.5, 4.5) * math.pi
        band = np.clip(0.5 + np.sin(u * freq) / (freq * px), 0.0, 1.0)
        return _cover(_box(u, v, 0.9, 0.9), px) * band
    if kind == "checker":
        k = rng.uniform(1.6, 2.6)
        cells = (np.floor(u * k) + np.floor(v * k)) % 2
        return _cover(_box(u, v, 0.9, 0.9), px) * cells.astype(np.float32)
    d = {
        "circle": lambda: np.sqrt(u * u + v * v) - 1.0,
        "square": lambda: _box(u, v, 0.8, 0.8),
        "triangle": lambda: _polygon(u, v + 0.15, 3, 1.1),
        "star": lambda: _star(u, v),
        "ring": lambda: np.abs(np.sqrt(u * u + v * v) - 0.75) - 0.2,
        "cross": lambda: np.minimum(_box(u, v, 0.95, 0.28), _box(u, v, 0.28, 0.95)),
        "ellipse_pair": lambda: np.minimum(_ellipse(u - 0.5, v, 0.42, 0.8), _ellipse(u + 0.5, v, 0.42, 0.8)),
        "hexagon": lambda: _polygon(u, v, 6, 1.0),
        "crescent": lambda: np.maximum(np.sqrt(u * u + v * v) - 1.0, 0.8 - np.sqrt((u - 0.55) ** 2 + v * v)),
        "arrow": lambda: np.minimum(_box(u + 0.3, v, 0.6, 0.2), _polygon((u - 0.35) * 1.2, v, 3, 0.75)),
    }[kind]()
    return _cover(d, px)


def _cover(d: np.ndarray, px: float) -> np.ndarray:
    return np.clip(0.5 - d / px, 0.0, 1.0).astype(np.float32)


# ---- the picture ----

def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a small (g, g, C) grid to (size, size, C): a smooth random field."""
    g = grid.shape[0]
    t = np.linspace(0.0, g - 1.0, size)
    i0 = np.minimum(np.floor(t).astype(np.int64), g - 2)
    w = (t - i0)[:, None]
    rows = grid[i0] * (1 - w[..., None]) + grid[i0 + 1] * w[..., None]
    return rows[:, i0] * (1 - w[None]) + rows[:, i0 + 1] * w[None]


def background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A random gradient (linear or radial) between two colours, mixed with smooth and blocky colour noise."""
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / size + 0.5
    else:
        cy, cx = rng.uniform(0, size, 2)
        t = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / size
    t = np.clip(t, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    smooth = _upsample(rng.normal(0, 1, (int(rng.integers(3, 9)),) * 2 + (3,)), size)
    img = img + rng.uniform(0.05, 0.25) * smooth
    if rng.random() < 0.5:
        block = int(rng.choice([2, 4, 8]))
        coarse = rng.normal(0, 1, (-(-size // block),) * 2 + (3,))
        img = img + rng.uniform(0.03, 0.15) * np.repeat(np.repeat(coarse, block, 0), block, 1)[:size, :size]
    return img.astype(np.float32)


def paint(img: np.ndarray, rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray,
          radius: float, alpha: float) -> None:
    """Blend one object of `kind` into img at a random place, rotation and colour (solid or two-tone)."""
    size = img.shape[0]
    cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
    a = rng.uniform(0, 2 * math.pi)
    sx, sy = radius * rng.uniform(0.85, 1.15), radius * rng.uniform(0.85, 1.15)
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(a) + dy * math.sin(a)) / sx
    v = (-dx * math.sin(a) + dy * math.cos(a)) / sy
    cov = shape_coverage(kind, u, v, 1.0 / min(sx, sy), rng)[..., None] * alpha
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    if rng.random() < 0.3:  # two-tone fill along the object's own axis
        t = np.clip(0.5 + 0.5 * u, 0, 1)[..., None]
        colour = colour * (1 - t) + rng.uniform(0, 1, 3).astype(np.float32) * t
    img *= 1 - cov
    img += cov * colour


def render(kind_index: int, kinds: tuple[str, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """One picture of class `kind_index`: background, clutter of the other kinds, the object, occluders, noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = background(rng, size, yy, xx)
    others = [k for i, k in enumerate(kinds) if i != kind_index]
    for _ in range(int(rng.integers(0, 3))):  # clutter: other kinds, faint and smaller
        paint(img, rng, others[int(rng.integers(len(others)))], yy, xx, size * rng.uniform(0.05, 0.15),
              rng.uniform(0.1, 0.3))
    paint(img, rng, kinds[kind_index], yy, xx, size * rng.uniform(0.2, 0.36), rng.uniform(0.7, 1.0))
    if rng.random() < 0.15:  # now and then a stronger distractor on top, smaller than the object
        paint(img, rng, others[int(rng.integers(len(others)))], yy, xx, size * rng.uniform(0.06, 0.12),
              rng.uniform(0.3, 0.6))
    for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.25 else 0):  # occluding blobs
        paint(img, rng, "circle" if rng.random() < 0.5 else "square", yy, xx, size * rng.uniform(0.05, 0.1),
              rng.uniform(0.6, 1.0))
    img += rng.normal(0, rng.uniform(0.01, 0.08), img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---- the folder ----

def split_counts(n: int, test_fraction: float) -> dict[str, int]:
    """Images per split: the test split is round(n * test_fraction), at least one of each when n allows."""
    n_test = min(max(int(round(n * test_fraction)), 1 if n > 1 else 0), n - 1 if n > 1 else 0)
    return {"train": n - n_test, "test": n_test}


def image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Each image's own seed: a hash of (seed, split, index), independent of which worker draws it."""
    return np.random.SeedSequence([seed, SPLITS.index(split), index])


def _render_chunk(job: tuple[Path, str, int, int, int, int, int]) -> int:
    """Render and write images start..stop of one split (one worker's contiguous share)."""
    root, split, start, stop, size, classes, seed = job
    kinds = KINDS[:classes]
    for i in range(start, stop):
        cls = i % classes
        rng = np.random.default_rng(image_seed(seed, split, i))
        Image.fromarray(render(cls, kinds, size, rng)).save(root / split / kinds[cls] / f"{i}.png",
                                                            compress_level=1)
    return stop - start


def _chunks(counts: dict[str, int], workers: int) -> list[tuple[str, int, int]]:
    """Split the (split, index) sequence into `workers` contiguous pieces of near-equal length."""
    total = sum(counts.values())
    bounds = [round(total * k / workers) for k in range(workers + 1)]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        offset = 0
        for s in SPLITS:  # a piece that straddles train/test becomes two jobs
            a, b = max(lo, offset), min(hi, offset + counts[s])
            if a < b:
                out.append((s, a - offset, b - offset))
            offset += counts[s]
    return out


def parameters(n: int, size: int, classes: int, seed: int, test_fraction: float) -> dict:
    return {"generator": "benchmarks/synth_images.py", "version": VERSION, "n": n, "size": size,
            "classes": classes, "seed": seed, "test_fraction": test_fraction,
            "counts": split_counts(n, test_fraction), "class_names": list(KINDS[:classes])}


def _check_args(n: int, size: int, classes: int, test_fraction: float) -> None:
    if n < classes * 2:
        raise ValueError(f"--n {n}: need at least 2 images per class ({classes * 2})")
    if not 16 <= size <= 1024:
        raise ValueError(f"--size {size}: must be 16..1024 pixels")
    if not 2 <= classes <= len(KINDS):
        raise ValueError(f"--classes {classes}: must be 2..{len(KINDS)} (the kinds: {', '.join(KINDS)})")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"--test-fraction {test_fraction}: must lie between 0 and 1")


def _prepare_root(root: Path, params: dict) -> bool:
    """True when root already holds this exact folder; otherwise clear our own old splits and make class folders."""
    marker = root / MARKER
    if marker.is_file():
        old = json.loads(marker.read_text())
        if old.get("complete") and {k: old.get(k) for k in params} == params:
            return True
        for s in SPLITS:  # ours, but other parameters or an interrupted run: start again
            shutil.rmtree(root / s, ignore_errors=True)
    elif any((root / s).exists() for s in SPLITS):
        raise SystemExit(f"{root} holds train/ or test/ but no {MARKER}: not a folder this script wrote; "
                         "choose an empty ROOT")
    marker.write_text(json.dumps({**params, "complete": False}, indent=2) + "\n")  # claims the folder as ours
    for s in SPLITS:
        for name in params["class_names"]:
            (root / s / name).mkdir(parents=True, exist_ok=True)
    return False


def generate(root: Path, n: int, size: int, classes: int = 10, seed: int = 0, workers: int | None = None,
             test_fraction: float = 1 / 6) -> dict:
    """Write the folder (or reuse it when its marker matches); return the marker's contents plus timing."""
    _check_args(n, size, classes, test_fraction)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = parameters(n, size, classes, seed, test_fraction)
    if _prepare_root(root, params):
        print(f"{root}: already holds this synthetic set ({n:,} images, {size}x{size}, {classes} classes, "
              f"seed {seed}); not regenerated", flush=True)
        return {**json.loads((root / MARKER).read_text()), "reused": True}
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    jobs = [(root, s, a, b, size, classes, seed) for s, a, b in _chunks(params["counts"], workers)]
    t0 = time.perf_counter()
    if workers == 1:
        done = sum(map(_render_chunk, jobs))
    else:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"  # fork: no re-import of the caller
        with mp.get_context(method).Pool(workers) as pool:
            done = sum(pool.map(_render_chunk, jobs, chunksize=1))
    seconds = time.perf_counter() - t0
    result = {**params, "complete": True, "workers": workers, "seconds": round(seconds, 2),
              "images_per_s": round(done / seconds, 1)}
    (root / MARKER).write_text(json.dumps(result, indent=2) + "\n")
    return {**result, "reused": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="folder to write train/ and test/ into")
    ap.add_argument("--n", type=int, default=100_000, help="total images, both splits")
    ap.add_argument("--size", type=int, default=96, help="pixels, square")
    ap.add_argument("--classes", type=int, default=10, help=f"2..{len(KINDS)}: the first of {', '.join(KINDS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    ap.add_argument("--test-fraction", type=float, default=1 / 6)
    args = ap.parse_args()
    try:
        info = generate(args.root, args.n, args.size, args.classes, args.seed, args.workers, args.test_fraction)
    except ValueError as exc:
        ap.error(str(exc))
    if not info["reused"]:
        print(f"{args.root}: wrote {info['counts']['train']:,} train + {info['counts']['test']:,} test PNGs "
              f"({args.size}x{args.size}, {args.classes} classes) in {info['seconds']:.1f} s with "
              f"{info['workers']} workers: {info['images_per_s']:,.0f} images/s")


if __name__ == "__main__":
    main()
