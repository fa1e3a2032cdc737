"""Data-parallel training over processes and machines, launched by torchrun (torch.distributed + DDP).

    torchrun --nproc_per_node 4 -m coqui_stt_training.train <the usual flags>

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain `python -m`) the world is one
process and nothing here does any communication. Every rank holds the whole model and trains on its
own slice of each global batch (--train_batch_size per process); DDP averages the gradients, so a
step equals one process's step on the global batch. Only rank 0 writes checkpoints, summaries and
reports; decisions that must agree (stop on a signal, save now, skip a non-finite step) are reduced
over all ranks first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import log


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.distributed else torch.cuda.current_device())
        return torch.device("cpu")

    # ---- collectives: no-ops in a world of one ---------------------------------------------------

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true if it is true on any rank (one all-reduce for all of them)."""
        if not self.distributed:
            return flags
        values = torch.tensor([float(f) for f in flags], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def sum(self, *values: float) -> tuple[float, ...]:
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor)
        return tuple(tensor.tolist())

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device() if dist.get_backend() == "nccl" else torch.device("cpu")


def init_world() -> World:
    """The world torchrun describes in the environment, with its process group started."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined_world(log_level: int) -> Iterator[World]:
    """The world of one command (train, evaluate): rank 0 speaks for the run and the others only warn; a job
    that succeeds ends with every rank meeting before the process group closes, since a rank that closed its
    connections while another still read from them (rank 0 writing the test report) could abort that one in
    gloo and fail a finished run. A rank that fails skips the meeting, and torchrun stops the others."""
    world = init_world()
    if not world.is_main:
        log.set_level(max(log_level, log.WARN))
    try:
        yield world
        world.barrier()
    finally:
        close_world(world)


def shard_batches(batches: list, world: World) -> list:
    """Evaluation: whole batches dealt round-robin, so every rank gets a disjoint share."""
    return batches[world.rank :: world.size]


def split_global_batches(batches: list[list[int]], per_rank: int, world: World) -> list[list[int]]:
    """Training: this rank's slice of each global batch (per_rank samples of per_rank * world.size)."""
    return [b[world.rank * per_rank : (world.rank + 1) * per_rank] for b in batches]
