"""Which training rows each step of an epoch takes: the labelled rows in the DistributedSampler's order, and the
unlabelled pool spread over the same steps."""
from __future__ import annotations

import math

import torch
from torch.utils.data import DistributedSampler

from edgedistill import distributed
from edgedistill.config import TrainConfig


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    steps = math.ceil(n / cfg.batch_size)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


class EpochPlan:
    """Which rows each step of an epoch takes. The labelled rows are shuffled by DistributedSampler as always, in
    steps of the batch size; the unlabelled rows (target -1), when there are any, are shuffled by a sampler of their
    own and spread over the same steps, so an epoch passes once over both in the steps the labelled rows alone
    would take: a model with an unlabelled pool takes the scratch control's steps, schedule and labelled batches."""

    def __init__(self, yt: torch.Tensor, batch: int, cfg: TrainConfig, seed: int):
        world, rank = distributed.world_size(), distributed.rank()
        labeled = yt >= 0
        self.labeled_rows = torch.nonzero(labeled).squeeze(1)
        self.pool_rows = torch.nonzero(~labeled).squeeze(1)
        self.batch = batch
        self.sampler = DistributedSampler(range(len(self.labeled_rows)), num_replicas=world, rank=rank,
                                          shuffle=True, seed=seed)
        self.n_steps = steps_per_epoch(len(self.sampler) * world, cfg)
        self.pool_sampler = DistributedSampler(range(len(self.pool_rows)), num_replicas=world, rank=rank,
                                               shuffle=True, seed=seed + 1) if len(self.pool_rows) else None
        every = math.ceil(len(self.sampler) / batch)  # steps of a whole pass, before max_steps_per_epoch
        self.streamed = bool(cfg.pool_batch and self.pool_sampler)
        if self.streamed:
            self.pool_batch = min(math.ceil(cfg.pool_batch / world), len(self.pool_sampler))
        else:
            self.pool_batch = math.ceil(len(self.pool_sampler) / every) if self.pool_sampler else 0

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """This process's row indices for each step of the epoch."""
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler))
        if self.pool_sampler is None:
            return [idx for idx in (order[s * self.batch:(s + 1) * self.batch] for s in range(self.n_steps))
                    if len(idx)]
        pool, b, pb = self._pool_order(epoch), self.batch, self.pool_batch
        steps = [torch.cat([self.labeled_rows[order[s * b:(s + 1) * b]], self.pool_rows[pool[s * pb:(s + 1) * pb]]])
                 for s in range(self.n_steps)]
        return [idx for idx in steps if len(idx)]

    def _pool_order(self, epoch: int) -> torch.Tensor:
        """The pool rows this epoch's steps take: a fresh shuffle of the whole pool, or with train.pool_batch the
        epoch's slice of one stream of shuffles, so each pass sees every row once whatever epoch it falls in."""
        if not self.streamed:
            self.pool_sampler.set_epoch(epoch)
            return torch.tensor(list(self.pool_sampler))
        size, count = len(self.pool_sampler), self.n_steps * self.pool_batch
        start, parts = (epoch - 1) * count, []
        while count > 0:
            walk, offset = divmod(start, size)
            self.pool_sampler.set_epoch(walk)
            part = torch.tensor(list(self.pool_sampler))[offset:offset + count]
            parts.append(part)
            start, count = start + len(part), count - len(part)
        return torch.cat(parts)
