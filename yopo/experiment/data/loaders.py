"""Loaders: an in-memory tensor set with batched augmentation (:class:`TensorLoader`), a streamed
``DataLoader`` (:class:`StreamLoader`), both with a per-epoch seeded, rank-sharded order, and
:class:`Data`, what ``load_data`` returns."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .augment import _mix


class TensorLoader:
    """Batches of an in-memory tensor set, on ``device``, with a per-epoch seeded order and
    batched augmentation. ``set_epoch(e)`` selects the epoch (as DistributedSampler does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, transform: Callable,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1, device="cpu"):
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.transform = batch_size, shuffle, transform
        self.seed, self.drop_last, self.rank, self.world = seed, drop_last, rank, world
        self.epoch = 0
        # drop the last partial batch only when there is more than one batch (BatchNorm needs > 1)
        if drop_last and self._per_rank() < batch_size:
            self.drop_last = False

    def _per_rank(self) -> int:
        n = len(self.y)
        return n // self.world if self.shuffle else math.ceil((n - self.rank) / self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        m = self._per_rank()
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def _generator(self, tag: int) -> torch.Generator:
        dev = self.device if self.device.type == "cuda" else torch.device("cpu")
        return torch.Generator(device=dev).manual_seed(_mix(self.seed, self.epoch, self.rank, tag))

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
            order = order[self.rank::self.world][: n // self.world]
        else:
            order = torch.arange(self.rank, n, self.world)
        order = order.to(self.device)
        g = self._generator(1)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.transform(self.x[idx], g), self.y[idx]


class StreamLoader:
    """A ``torch.utils.data.DataLoader`` over a map-style dataset (decoded per image, in worker
    processes) with the same per-epoch seeded, rank-sharded order as :class:`TensorLoader`."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world: int = 1, device="cpu", workers: int = 2):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world, self.workers = drop_last, rank, world, workers
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _indices(self) -> list[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
            return order[self.rank::self.world][: n // self.world].tolist()
        return list(range(self.rank, n, self.world))

    def __len__(self) -> int:
        m = len(self._indices())
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self):
        from torch.utils.data import DataLoader
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, self.rank, 2))  # worker seeds
        dl = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self._indices(), drop_last=self.drop_last,
                        num_workers=self.workers, generator=g, pin_memory=self.device.type == "cuda",
                        persistent_workers=False)
        for x, y in dl:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass
class Data:
    """What :func:`load_data` returns. ``input_shape`` is per sample, e.g. (3, 32, 32) or (40,)."""

    name: str
    train: TensorLoader | StreamLoader
    test: TensorLoader | StreamLoader
    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def example_batch(self, n: int | None = None):
        """One deterministic, un-augmented (normalized) batch of ``n`` training samples (default: a
        batch), e.g. for data-dependent scoring methods."""
        n = n or self.train.batch_size
        tr = self.train
        if isinstance(tr, TensorLoader):
            k = min(n, len(tr.y))
            idx = torch.randperm(len(tr.y), generator=torch.Generator().manual_seed(_mix(tr.seed, -1)))[:k]
            idx = idx.to(tr.device)
            return self.info["eval_transform"](tr.x[idx], None), tr.y[idx]
        ds = tr.dataset  # streamed sets: the first n training images, with the training transform
        xs, ys = zip(*(ds[i] for i in range(min(n, len(ds)))))
        return torch.stack(xs).to(tr.device), torch.tensor(ys).to(tr.device)
