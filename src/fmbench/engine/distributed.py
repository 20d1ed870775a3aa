"""torch.distributed glue: set-up from torchrun's environment, reductions, rank-0 decisions.

Without torchrun (no WORLD_SIZE in the environment) every function is a cheap no-op, so the
engine runs unchanged in one process.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from fmbench.errors import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str, timeout_s: float | None = None) -> str:
    """Join the process group torchrun describes; return the device name this rank should use.

    gloo on CPU, nccl on CUDA (one GPU per local rank). A rank that dies makes the others fail
    after `timeout_s` with an error instead of hanging for ever.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device_name
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if timeout_s is None:
        timeout_s = float(os.environ.get("FMBENCH_DIST_TIMEOUT", "300"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if torch.cuda.device_count() <= local_rank:
            raise ConfigError(f"rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return device_name


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` across ranks in place (no-op in one process)."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (e.g. stop early) sent to every rank, so that all ranks stop together."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
