"""Which corpus images each rank trains on at each step of ``biomoe pretrain``.

The images of optimiser step ``k`` are positions ``k * G .. k * G + G - 1``
(``G`` the global batch) of an endless sequence of epochs, each a seeded
permutation of the corpus (``numpy.random.default_rng([seed, epoch])``).
That is a pure function of ``(seed, step)``, whatever the number of ranks,
so a run resumed on another number of processes continues with exactly the
images it would have seen. Rank ``r`` of ``W`` takes every ``W``-th image of
the step (``r, r + W, ...``): the ranks' shares are disjoint, and within an
epoch no image is seen twice. Each share is cut into micro-batches of
``batch_size`` images, the forward passes accumulated into one step.

Examples
--------
>>> sampler = StepSampler(100, global_batch=8, batch_size=2, rank=1, world_size=2, seed=0, steps=3)
>>> len(sampler), sampler.accumulation, [len(batch) for batch in sampler]
(6, 2, [2, 2, 2, 2, 2, 2])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["StepSampler", "step_indices"]


def step_indices(step: int, global_batch: int, size: int, seed: int, order: dict | None = None) -> np.ndarray:
    """Corpus indices of optimiser step ``step`` (all ranks together), shape (global_batch,).

    ``order`` caches the epochs' permutations between calls (a dict, reused).
    """
    order = {} if order is None else order
    positions = step * global_batch + np.arange(global_batch)
    epochs, offsets = np.divmod(positions, size)
    out = np.empty(global_batch, dtype=np.int64)
    for epoch in np.unique(epochs):
        if epoch not in order:
            if len(order) > 1:  # keep the last two epochs: a step spans at most two
                order.clear()
            order[epoch] = np.random.default_rng([seed, int(epoch)]).permutation(size)
        out[epochs == epoch] = order[epoch][offsets[epochs == epoch]]
    return out


class StepSampler:
    """Batch sampler of one rank: its micro-batches for steps ``start_step .. steps - 1``.

    Parameters
    ----------
    size : int
        Images in the corpus.
    global_batch : int
        Images per optimiser step over all ranks; a multiple of ``batch_size * world_size``.
    batch_size : int
        Images per forward pass on this rank.
    rank, world_size : int
    seed : int
    start_step, steps : int, default 0 and 1
        Steps to cover (a resumed run starts at its saved step).
    """

    def __init__(self, size: int, *, global_batch: int, batch_size: int, rank: int, world_size: int, seed: int,
                 start_step: int = 0, steps: int = 1):
        if global_batch % (batch_size * world_size):
            raise ValueError(
                f"the global batch ({global_batch} images) must be a multiple of the batch size ({batch_size}) "
                f"x the number of processes ({world_size}); change --global-batch or --batch-size"
            )
        self.size, self.global_batch, self.batch_size = size, global_batch, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.start_step, self.steps = start_step, steps
        self.accumulation = global_batch // (batch_size * world_size)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[int]]:
        order: dict = {}
        for step in range(self.start_step, self.steps):
            share = step_indices(step, self.global_batch, self.size, self.seed, order)[self.rank :: self.world_size]
            for start in range(0, len(share), self.batch_size):
                yield share[start : start + self.batch_size].tolist()
