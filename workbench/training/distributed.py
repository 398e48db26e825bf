"""Data parallelism across processes started by `torchrun` (or `accelerate launch`): one process per GPU (or, on
CPU, per group of cores), each with the whole model.

    torchrun --nproc-per-node 2 -m workbench train --method prompt-tuning --task sst2

The launcher sets RANK / WORLD_SIZE / LOCAL_RANK; `setup()` joins the process group (NCCL on CUDA, gloo on CPU).
Every process draws the same seeded batch order, takes its equal share of each batch, and the gradients are
averaged across processes before each optimizer step: the update is the one a single process would make on the
whole batch (exactly so for a loss that is a mean over examples). Every process evaluates the whole dev split, so
all keep the same state without exchanging it; only the first (rank 0) writes to MLflow and prints.
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    return world_size() > 1


def setup() -> None:
    """Join the launcher's process group (once); nothing when the job runs as one process."""
    import torch.distributed as dist

    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def device() -> torch.device:
    """This process's device: its own GPU under a launcher (LOCAL_RANK), else the first GPU, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0)


def share(batch: list, batch_size: int) -> list:
    """This process's part of a batch that every process drew alike: contiguous, equal parts."""
    n = world_size()
    if n == 1:
        return batch
    if batch_size % n:
        from workbench.errors import ConfigError

        raise ConfigError(f"train.batch_size: {batch_size} examples cannot be shared equally by {n} processes; "
                          f"use a multiple of {n}", field="train.batch_size")
    part = len(batch) // n
    return batch[rank() * part:(rank() + 1) * part]


def mean_across(values: torch.Tensor) -> torch.Tensor:
    """`values` averaged over the processes (each process's losses are those of its share of the batch)."""
    import torch.distributed as dist

    if not launched():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Each gradient replaced by its mean over the processes, in one all-reduce of one flat buffer."""
    import torch.distributed as dist

    if not launched():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
        offset += n
