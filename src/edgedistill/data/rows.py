"""Inputs that stay on disk: a file of fixed-size rows read with pread, and packed uint8 images that become
standardised float32 only per batch.

Rows are read with os.pread rather than through a memory map: every page a map touches counts in the process's
resident memory, so one epoch over a 2.8 GB pack would put 2.8 GB in RSS. pread goes through the OS page cache
(just as fast once the file is cached) and keeps the process holding only the batch it asked for.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgedistill.errors import UserError

FLOAT = np.dtype(np.float32)


class RowFile:
    """A raw file of `shape[0]` rows of `shape[1:]` items of `dtype`, row-major, with no header."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = os.open(self.path, os.O_RDONLY)  # opened now: forked workers share it (pread
        # takes no file position), and a pack replaced later under the same name is not read by mistake

    def _handle(self) -> int:
        if self._fd is None:  # unpickled in another process
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, in reads of at most 1 GB (one pread returns at most about 2 GB)."""
        n = max(0, stop - start)
        want = n * self.row_bytes
        buf = bytearray()
        while len(buf) < want:
            got = os.pread(self._handle(), min(want - len(buf), 2**30), start * self.row_bytes + len(buf))
            if not got:
                raise UserError(f"{self.path}: holds fewer rows than its {self.shape[0]}; delete it to rebuild it")
            buf += got
        return np.frombuffer(bytes(buf), dtype=self.dtype).reshape((n,) + self.shape[1:])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Any rows, in the order given; runs of consecutive rows are read at once."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        if len(rows) == 0:
            return out
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            out[lo:hi] = self.read(int(rows[lo]), int(rows[hi - 1]) + 1)
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


class PackedImages:
    """Some rows of a uint8 (or uint16) (N, C, H, W) pack, presented as standardised float32: indexing returns a numpy array
    of just those rows, so code written for in-memory arrays (x[:64], x[i:i + b], x[idx]) works unchanged."""

    ndim = 4
    dtype = FLOAT

    def __init__(self, pack: RowFile, index: np.ndarray, mean: np.ndarray, std: np.ndarray, fingerprint: str):
        self.pack, self.index = pack, np.asarray(index, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        self.pack_fingerprint = fingerprint

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index),) + self.pack.shape[1:]

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, rows) -> np.ndarray:
        """The raw pixels of these rows (positions in this subset)."""
        return self.pack.take(self.index[rows])

    def standardise(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels in [0, 1] of the pack's range (255, or 65535 for 16-bit images), then standardised."""
        scale = np.float32(1 / np.iinfo(self.pack.dtype).max)
        return (pixels.astype(np.float32) * scale - self.mean) / self.std

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self.standardise(self.raw([rows]))[0]
        if hasattr(rows, "numpy"):  # a torch index tensor
            rows = rows.numpy()
        return self.standardise(self.raw(rows))

    def subset(self, rows) -> PackedImages:
        return PackedImages(self.pack, self.index[rows], self.mean, self.std, self.pack_fingerprint)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole subset in memory, for data.options.in_memory and small sets; streamed code never calls it."""
        out = np.empty(self.shape, dtype=np.float32)
        for i in range(0, len(self), 4096):
            out[i:i + 4096] = self[i:i + 4096]
        return out if dtype is None else out.astype(dtype)

    def fingerprint(self) -> str:
        """What the inputs are, without reading them: the pack's own key, these rows and the standardisation."""
        h = hashlib.sha256(self.pack_fingerprint.encode())
        for a in (self.index, self.mean, self.std):
            h.update(a.tobytes())
        return h.hexdigest()


class StackedRows:
    """Row sets of one input shape read as one, the first's rows first: a packed image folder and an unlabelled
    pool packed from another folder. Indexing reads each part's rows and puts them back in the order asked."""

    dtype = FLOAT

    def __init__(self, parts: list):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.starts[-1]),) + tuple(self.parts[0].shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows) -> np.ndarray:
        if hasattr(rows, "numpy"):
            rows = rows.numpy()
        single = isinstance(rows, (int, np.integer))
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows),) + self.shape[1:], dtype=np.float32)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for i, p in enumerate(self.parts):
            at = np.flatnonzero(part == i)
            if len(at):
                out[at] = p[rows[at] - self.starts[i]]
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.parts:
            h.update(bytes(data_digest(p)))
        return h.hexdigest()


def stack_rows(parts: list):
    """The rows of every part, in order, without decoding a pack: arrays are concatenated, subsets of one pack
    become one subset, anything else a StackedRows."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    first = parts[0]
    if all(isinstance(p, PackedImages) and p.pack is first.pack and np.array_equal(p.mean, first.mean)
           and np.array_equal(p.std, first.std) for p in parts):
        return PackedImages(first.pack, np.concatenate([p.index for p in parts]), first.mean, first.std,
                            first.pack_fingerprint)
    return StackedRows(parts)


def streamed(x) -> bool:
    """Inputs read from disk per batch rather than held as one array."""
    return isinstance(x, (PackedImages, StackedRows))


def take_rows(x, rows):
    """x[rows] for an in-memory array, a lazy subset for packed images: splitting never decodes a pack."""
    return x.subset(rows) if isinstance(x, PackedImages) else x[rows]


def data_digest(x) -> bytes:
    """Bytes that change when the inputs do, for cache keys: the array itself, or a pack's fingerprint."""
    if streamed(x):
        return x.fingerprint().encode()
    return memoryview(np.ascontiguousarray(x)).cast("B")
