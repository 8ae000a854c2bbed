"""PyTorch data-parallel training: ``torchrun`` + ``DistributedDataParallel`` (rules in :mod:`spkid.training.distributed`).

Run on one machine with N processes (one per GPU, or N CPU processes with the gloo backend)::

    torchrun --standalone --nproc_per_node 4 -m spkid train --backend torch --cache CACHE --out RUN
    spkid train --backend torch --devices 4 --cache CACHE --out RUN      # spkid.training.distributed.launch_torchrun

and on several machines with torchrun's usual ``--nnodes/--node_rank/--rdzv_endpoint`` flags. Each
process reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment torchrun sets; the process
group uses NCCL on CUDA and gloo on CPU. BatchNorm layers become ``SyncBatchNorm`` on CUDA (statistics
over the micro-batches of all ranks); PyTorch's ``SyncBatchNorm`` refuses CPU tensors, so CPU processes
keep per-rank statistics -- which makes N CPU ranks equal a single process with
``grad_accumulation=N`` (tested), not one with the batch in one piece.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Context", "context", "close"]


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the job: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, devices: str) -> torch.device:
        """``cuda:LOCAL_RANK`` when CUDA is there and not refused by ``devices="cpu"``, else the CPU."""
        if devices == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank)

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def context(devices: str) -> Context:
    """The job from torchrun's environment; initialises the process group (NCCL on CUDA, else gloo) once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ctx = Context(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        cuda = ctx.device(devices).type == "cuda"
        if cuda:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return ctx


def close() -> None:
    """Tear down the process group :func:`context` opened (at the end of ``fit``), after a barrier so no
    rank tears it down while a peer is still in a collective. Drop DDP wrappers first: a reducer that
    outlives its process group can abort the process at exit ("terminate called without an active
    exception", seen in about 1 of 5 `spkid train --devices 2` runs before ``fit`` did so)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

