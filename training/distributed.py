"""One process, or one rank of a ``torchrun`` launch: process group, device and reductions.

``torchrun`` (``python -m torch.distributed.run``) starts the processes, on
one machine or several (its rendezvous), and gives each ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in its
environment; :func:`distributed` reads them, so the same command runs alone
or as one of many ranks. NCCL joins the ranks on CUDA, gloo on the CPU;
each rank uses GPU ``LOCAL_RANK`` of its machine. Without those variables it
is a single process and every collective below is a no-op.

Examples
--------
>>> with distributed("cpu") as ranks:
...     ranks.world_size, float(ranks.all_reduce_sum(torch.ones(1))[0])
(1, 1.0)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.errors import TrainingError
from training.settings import resolve_device

__all__ = ["Ranks", "distributed"]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    @property
    def joined(self) -> bool:
        """Whether a process group joins this process to others (a torchrun launch)."""
        return dist.is_initialized()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (in place; returned)."""
        if self.joined:
            dist.all_reduce(values)
        return values

    def broadcast_from_main(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (in place) with rank 0's."""
        if self.joined:
            for tensor in tensors:
                dist.broadcast(tensor, 0)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.joined:
            dist.barrier()


@contextmanager
def distributed(device: str = "auto") -> Iterator[Ranks]:
    """Join the ranks of a torchrun launch for the ``with`` block (alone without one).

    Parameters
    ----------
    device : str, default "auto"
        As ``--device``: "auto" (CUDA when present), "cpu" or "cuda". Under
        torchrun each rank takes GPU ``LOCAL_RANK``, so a GPU index is an error.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        yield Ranks(0, 1, 0, resolve_device(device))
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if chosen.index is not None:
            raise TrainingError(f"--device {device}: under torchrun each rank uses GPU LOCAL_RANK; "
                                "pass --device cuda or auto")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    try:
        yield Ranks(rank, world_size, local_rank, chosen)
    finally:
        dist.destroy_process_group()
