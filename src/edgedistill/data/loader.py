"""Training inputs batch by batch. In-memory arrays are indexed as one tensor, as always; packed images are read
and standardised per batch (on a GPU by DataLoader workers, a few batches ahead of the step), in the order the
trainer's DistributedSampler fixed, so resume and torchrun see the same batches whether the data streams or not."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgedistill import distributed
from edgedistill.data.rows import PackedImages, StackedRows, streamed
from edgedistill.quiet import forking


def auto_workers(accel: torch.device) -> int:
    """On a GPU the cores are idle while it trains: all but one per process read ahead, up to 4. On the CPU the
    step already uses every core, and reading a batch in place costs about 1% of it (benchmarks/data_scale.py),
    so a worker would only take cores from the step."""
    if accel.type == "cpu":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) // distributed.world_size() - 1))


class BatchRows(Dataset):
    """Item i is the i-th batch of rows, standardised: a worker reads and converts a whole batch at once."""

    def __init__(self, x: PackedImages | StackedRows, batches: list[np.ndarray]):
        self.x, self.batches = x, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.x[self.batches[i]])


class Rows:
    """The inputs of one training split, handed out per batch of row indices."""

    def __init__(self, x, workers: int | None, accel: torch.device):
        self.packed = streamed(x)
        self.x = x if self.packed else torch.as_tensor(x)
        self.workers = auto_workers(accel) if workers is None else workers
        self.pin = accel.type == "cuda"

    def __len__(self) -> int:
        return len(self.x)

    def epoch(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, float rows) for each batch, in order."""
        if not self.packed or self.workers == 0:
            for idx in batches:
                yield idx, self.x[idx] if not self.packed else torch.from_numpy(self.x[idx.numpy()])
            return
        loader = DataLoader(BatchRows(self.x, [b.numpy() for b in batches]), batch_size=None, shuffle=False,
                            num_workers=self.workers, pin_memory=self.pin,
                            generator=torch.Generator())  # its worker seeds come from here, not torch's global RNG
        with forking():
            it = iter(loader)
        yield from zip(batches, it)
