"""Processes and device: one process, or one of N under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set), each then
in a gloo (CPU) or nccl (GPU) group. Rank 0 alone logs, shows progress and writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pixelwave.errors import UserError


@dataclass
class Processes:
    device: torch.device
    ddp: bool = False  # a torchrun worker: gradients are averaged over the processes by DDP
    world: int = 1
    rank: int = 0
    own_group: bool = False  # this call created the process group (and so destroys it)

    @property
    def master(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce in place (sum over the processes); a no-op alone."""
        if self.ddp:
            dist.all_reduce(t)
        return t

    def all_ok(self, ok: bool) -> bool:
        """Whether every process says ok (one collective)."""
        if not self.ddp:
            return ok
        flag = torch.tensor([ok], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        if self.ddp:
            dist.barrier()

    def close(self) -> None:
        if self.own_group:
            dist.destroy_process_group()


def start(device: str) -> Processes:
    """Join torchrun's group if this process is one of its workers, and pick the device ("auto" takes a GPU
    when there is one)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda" if use_cuda else "cpu")
    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return Processes(dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    own = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        own = True
    return Processes(dev, ddp=True, world=int(os.environ["WORLD_SIZE"]), rank=dist.get_rank(), own_group=own)
