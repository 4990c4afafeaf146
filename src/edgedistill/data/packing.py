"""Packing an image folder once: decode every file, resize it, and write its pixels as one file of rows: uint8, or
uint16 when the folder holds a 16-bit image (depth, thermal and medical cameras keep their range).

A pack is a folder of two files: images.u8 (N x C x H x W pixels, no header) and meta.json (shape, dtype, labels,
classes, the fingerprint it was built from), at <pack_dir>/<folder>-<hash of the folder, size and colour mode>/<fingerprint>.
The fingerprint is every file's path, byte size and mtime: a changed, added or removed image makes a new pack,
and the old one is removed. Later runs, --seeds, --resume and every torchrun process read the same pack. A plain
byte file was chosen over Arrow or WebDataset shards because every read is "these rows, in this order": pread of a
fixed row size does that with no index, no decoding and no extra dependency (docs/benchmarks.md, data_scale).
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedistill.atomic import atomic_write_text, read_json_object
from edgedistill.data.cache import cache_root
from edgedistill.data.rows import RowFile
from edgedistill.errors import UserError, first_line
from edgedistill.progress import emit, track
from edgedistill.runlock import hold, let_go

log = logging.getLogger("edgedistill")
FORMAT = "edgedistill-image-pack-v2"  # v2: a uint16 pack for 16-bit images, "dtype" in meta
PACK_KEYS = frozenset({"fingerprint", "shape", "dtype", "classes", "labels", "tags", "skipped"})  # open_pack reads
PARALLEL_FROM = 512  # below this many files, decoding in this process is quicker than starting workers
BAR_FROM = 5000  # a smaller folder packs in a few seconds: no progress bar


@dataclass
class Pack:
    folder: Path
    images: RowFile
    labels: np.ndarray  # class index per row
    tags: np.ndarray  # per row, the tag it was listed with (e.g. 0 train, 1 test)
    classes: list[str]
    fingerprint: str
    skipped: list[str]
    built: bool


def default_pack_dir() -> Path:
    """$EDGEDISTILL_CACHE/packs, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)/edgedistill/packs."""
    return cache_root() / "packs"


def pack_dir_source(pack_dir: Path | None) -> str:
    """Where the pack folder was chosen, to name in an error: the option, the environment variable or the default."""
    if pack_dir:
        return "data.options.pack_dir"
    if os.environ.get("EDGEDISTILL_CACHE"):
        return f"EDGEDISTILL_CACHE={os.environ['EDGEDISTILL_CACHE']} (environment variable)"
    return "the default pack folder (~/.cache/edgedistill/packs)"


def fingerprint(root: Path, files: list[Path], settings: dict) -> str:
    """Every file's path under root, byte size and modification time, with the decoding settings."""
    h = hashlib.sha256(json.dumps([FORMAT, settings]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's 16-bit greyscale (and 32-bit integer) modes


def _wide(im, size: tuple[int, int] | None, mode: str) -> np.ndarray | str:
    """A 16-bit greyscale image as (C, H, W) uint16, resized in 32-bit integers; values beyond 16 bits refused."""
    im = im.convert("I")
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]))
    px = np.asarray(im)
    if px.size and (px.min() < 0 or px.max() > 65535):
        return f"holds values {int(px.min())}..{int(px.max())}, beyond 16 bits; save it as a 16-bit PNG or TIFF"
    px = px.astype(np.uint16)[None]
    return np.repeat(px, 3, axis=0) if mode == "RGB" else px


def decode(f: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray | str:
    """(C, H, W) pixels, uint8, or uint16 for a 16-bit greyscale image (depth, thermal and medical cameras), whose
    range an 8-bit conversion would clip; or the one-line reason the file cannot be read."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            if im.mode == "F":
                return "is a floating-point image; save it as an 8- or 16-bit PNG or TIFF"
            if im.mode in WIDE_MODES:
                return _wide(im, size, mode)
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]))  # Pillow's default filter, as image_folder always resized
            px = np.asarray(im)
    except Image.DecompressionBombError as exc:
        return f"too large to decode safely ({first_line(exc)})"
    except Exception as exc:  # noqa: BLE001  (a corrupt TIFF or GIF can raise struct.error, IndexError, ...)
        return f"not a readable image ({first_line(exc)})"
    return px[None] if px.ndim == 2 else px.transpose(2, 0, 1)


def _decode_one(job: tuple[Path, tuple[int, int] | None, str]) -> np.ndarray | str:
    return decode(*job)


def _decoded(files: list[Path], size: tuple[int, int] | None, mode: str):
    """Decoded images in file order; worker processes share the work on a large folder."""
    jobs = [(f, size, mode) for f in files]
    workers = min(8, os.cpu_count() or 1)
    if len(files) < PARALLEL_FROM or workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(_decode_one, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_decode_one, jobs, chunksize=64)


class _Deeper(Exception):
    """A 16-bit image met while writing an 8-bit pack: the pack is written again at 16 bits."""


def check_room(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UserError(f"data.options.pack_dir: the image pack needs {need / 1e9:.2f} GB but {folder} has "
                        f"{free / 1e9:.2f} GB free; free some space or set data.options.pack_dir to a disk with room")


def write_rows(out, files: list[Path], size: tuple[int, int] | None, mode: str, skip_unreadable: bool, root: Path,
               dtype: np.dtype) -> tuple[list[int], list[str], tuple]:
    """Decode every file into `out` as rows of dtype; returns the kept file indices, the skipped names, the shape."""
    kept, skipped, shape = [], [], None
    for i, px in enumerate(track(_decoded(files, size, mode), desc="pack images", unit="img", total=len(files),
                                 enabled=len(files) >= BAR_FROM)):
        if isinstance(px, str):
            if not skip_unreadable:
                raise UserError(f"{files[i]}: {px}; remove or replace it, or set data.options.skip_unreadable: true "
                                "to leave such files out")
            skipped.append(str(files[i].relative_to(root)))
            continue
        if px.dtype.itemsize > dtype.itemsize:
            raise _Deeper
        if shape is None:
            shape = px.shape
            check_room(Path(out.name).parent, len(files) * px.size * dtype.itemsize)
        elif px.shape != shape:
            raise UserError(f"{files[i]}: is {px.shape[1]}x{px.shape[2]} but {files[kept[0]]} is "
                            f"{shape[1]}x{shape[2]}; resize them or set data.options.size: [H, W]")
        if px.dtype != dtype:
            px = px.astype(dtype) * 257  # 8-bit pixels in a 16-bit pack: 255 becomes 65535
        out.write(np.ascontiguousarray(px).tobytes())
        kept.append(i)
    return kept, skipped, shape


def starts_wide(files: list[Path]) -> bool:
    """Whether the first image is 16-bit (its header alone), so a 16-bit folder is not decoded twice."""
    from PIL import Image

    try:
        with Image.open(files[0]) as im:
            return im.mode in WIDE_MODES
    except Exception:  # noqa: BLE001  (an unreadable first file is named when it is decoded)
        return False


def build(dest: Path, root: Path, files: list[Path], labels: np.ndarray, tags: np.ndarray, classes: list[str],
          size: tuple[int, int] | None, mode: str, skip_unreadable: bool, key: str) -> None:
    """Decode into a temporary folder beside dest, locked while it is written, then rename it into place, so a
    killed packer leaves no half pack (and the next packer removes its folder). A pack is never rewritten: a run
    still reading an older one keeps its open file. 8-bit images make a uint8 pack; any 16-bit one, a uint16 pack."""
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    owner = hold(tmp)
    try:
        for dtype in [np.dtype(np.uint16)] if starts_wide(files) else [np.dtype(np.uint8), np.dtype(np.uint16)]:
            try:
                with open(tmp / "images.u8", "wb") as out:
                    kept, skipped, shape = write_rows(out, files, size, mode, skip_unreadable, root, dtype)
                break
            except _Deeper:
                continue
        if not kept:
            raise UserError(f"{root}: none of its {len(files)} images could be read")
        meta = {"format": FORMAT, "fingerprint": key, "shape": [len(kept), *shape], "dtype": dtype.name,
                "classes": classes, "labels": labels[kept].tolist(), "tags": tags[kept].tolist(),
                "skipped": skipped, "source": str(root)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        take_place(tmp, dest)
    finally:
        let_go(owner)
        shutil.rmtree(tmp, ignore_errors=True)


def take_place(tmp: Path, dest: Path, tries: int = 3) -> None:
    """Rename the finished pack into place. A whole pack already there is another packer's, finished first; a
    damaged one (edited, or its pixel file cut short) is moved aside under a temporary name and removed, while a run
    still reading it keeps its open file."""
    for _ in range(tries):
        try:
            tmp.rename(dest)
            return
        except OSError:
            if read_meta(dest) is not None:
                return
        aside = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"  # named so: a dead packer's, if killed now
        try:
            dest.rename(aside)
        except FileNotFoundError:
            continue  # another packer moved it aside first
        shutil.rmtree(aside, ignore_errors=True)
    tmp.rename(dest)  # still in the way: let its OSError name the folder


def remove_dead_packers(home: Path, min_age_s: float = 2.0) -> list[Path]:
    """Temporary packs whose packer was killed: none holds its lock, and it is older than a packer takes to lock
    it. A live packer's (another run packing the same folder now) is left alone."""
    removed = []
    for tmp in home.glob(".*.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        owner = hold(tmp)
        if owner is None:
            continue
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
        finally:
            let_go(owner)
    return removed


def read_meta(dest: Path) -> dict | None:
    """The pack's meta.json when it is of this format, names every key open_pack reads and its pixel file is whole;
    else None (the pack is built again, never trusted)."""
    meta = read_json_object(dest / "meta.json")
    if meta is None or meta.get("format") != FORMAT or not PACK_KEYS <= meta.keys():
        return None
    try:
        n, *row = meta["shape"]
        size = n * int(np.prod(row)) * np.dtype(meta["dtype"]).itemsize
        return meta if (dest / "images.u8").stat().st_size == size and len(meta["labels"]) == n else None
    except (OSError, TypeError, ValueError):
        return None


def open_pack(root: Path, files: list[Path], labels: np.ndarray, tags: np.ndarray, classes: list[str],
              size: tuple[int, int] | None, mode: str, skip_unreadable: bool, pack_dir: Path | None) -> Pack:
    """The folder's pack: reused when its fingerprint matches, else built (or rebuilt) now."""
    settings = {"size": size, "mode": mode, "skip_unreadable": skip_unreadable, "classes": classes}
    key = fingerprint(root, files, settings)
    where = hashlib.sha256(json.dumps([str(root.resolve()), size, mode]).encode()).hexdigest()[:16]
    home = Path(pack_dir or default_pack_dir()) / f"{root.name}-{where}"
    dest = home / key[:16]
    meta = read_meta(dest)
    built = meta is None or meta["fingerprint"] != key
    if built:
        t0 = time.perf_counter()
        try:
            home.mkdir(parents=True, exist_ok=True)
            remove_dead_packers(home)
            build(dest, root, files, labels, tags, classes, size, mode, skip_unreadable, key)
            for stale in home.iterdir():  # packs of the folder as it was; a run reading one keeps its open file
                if stale != dest and not stale.name.startswith("."):
                    shutil.rmtree(stale, ignore_errors=True)
        except OSError as exc:
            raise UserError(f"{pack_dir_source(pack_dir)}: cannot write the image pack in {dest.parent} "
                            f"({first_line(exc)}); set data.options.pack_dir (or EDGEDISTILL_CACHE) to a writable "
                            "folder with room for the pixels as uint8") from None
        meta = read_meta(dest)
        emit("data_pack", built=True, images=meta["shape"][0], seconds=round(time.perf_counter() - t0, 3),
             path=str(dest))
    else:
        emit("data_pack", built=False, images=meta["shape"][0], path=str(dest))
    if meta["skipped"]:
        log.warning("%s: %d unreadable image(s) left out (data.options.skip_unreadable), e.g. %s",
                    root, len(meta["skipped"]), meta["skipped"][0])
    return Pack(dest, RowFile(dest / "images.u8", tuple(meta["shape"]), np.dtype(meta["dtype"])),
                np.asarray(meta["labels"], dtype=np.int64), np.asarray(meta["tags"], dtype=np.int64),
                meta["classes"], key, meta["skipped"], built)


def channel_stats(pack: Pack, rows: np.ndarray, chunk_bytes: int = 2**26) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of these rows' pixels in [0, 1] (of the pack's full range), read in chunks; kept in the pack's stats.json so
    the next run on the same rows does not read the pack again."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    key = hashlib.sha256(rows.tobytes()).hexdigest()
    path = pack.folder / "stats.json"
    c = pack.images.shape[1]
    known = read_json_object(path) or {}
    try:
        mean, std = (np.asarray(known[key][k], dtype=float) for k in ("mean", "std"))
        if mean.shape == std.shape == (c,) and np.isfinite([mean, std]).all() and (std > 0).all():
            return mean, std
    except (KeyError, TypeError, ValueError):
        pass  # not computed yet for these rows; a damaged entry is computed again and rewritten
    chunk = max(1, chunk_bytes // pack.images.row_bytes)
    total, sq = np.zeros(c), np.zeros(c)
    for i in range(0, len(rows), chunk):
        px = pack.images.take(rows[i:i + chunk]).astype(np.float32)
        total += px.sum(axis=(0, 2, 3), dtype=np.float64)
        sq += np.square(px).sum(axis=(0, 2, 3), dtype=np.float64)
    count = len(rows) * int(np.prod(pack.images.shape[2:]))
    top = float(np.iinfo(pack.images.dtype).max)  # 255, or 65535 for a 16-bit pack
    mean = total / count / top
    std = np.sqrt(np.maximum(sq / count / top**2 - mean**2, 0.0)) + 1e-8
    known[key] = {"mean": mean.tolist(), "std": std.tolist()}
    try:
        atomic_write_text(path, json.dumps(known))
    except OSError:
        pass  # a read-only pack still works; the stats are computed again next time
    return mean, std
