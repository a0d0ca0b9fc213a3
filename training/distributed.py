"""Data-parallel training under ``torchrun``: the training command runs unchanged on N processes.

    torchrun --nproc_per_node 2 -m training.train --config ...            # one machine, 2 processes
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m training.train ...

Protocol. Every rank draws the *same* global batch (the sampler and the augmentation generator are
seeded alike and advanced alike on all ranks, exactly as in one process) and computes its own
contiguous slice of it; DDP averages the gradients, so a step sees the gradient of the whole batch's
mean loss, as one process does. BatchNorm takes its statistics over the whole global batch too
(:func:`sync_batchnorm`: PyTorch's SyncBatchNorm on GPUs; on CPU, where that is not available,
:class:`AllReduceBatchNorm`), without which a slice's statistics differ from the batch's and the run
follows another trajectory (measured on the test's tiny run: 2x the loss after 40 steps). The global
batch stays ``batch_size`` whatever the world size, so the learning-rate schedule, the checkpoints
and the logged figures mean the same at any size, and what differs from one process is the
summation order (tests/test_distributed_training.py states the tolerance). Rank 0 alone writes the checkpoint,
the log and the held-out figures; the checkpoint holds no per-rank state, so a run resumes at any
world size. Backend: NCCL on CUDA (one GPU per process, ``LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, batch: int) -> slice:
        """This rank's contiguous slice of a global batch of ``batch`` (``batch`` divides evenly)."""
        per = batch // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


def init(device_name: str, batch_size: int) -> tuple[World, str]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); returns the world
    and the device name this rank uses (``cuda:LOCAL_RANK`` on GPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device_name
    if batch_size % size:
        raise ValueError(f"batch_size {batch_size} does not split over {size} processes; pick a multiple of {size}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), size, local_rank), (f"cuda:{local_rank}" if cuda else "cpu")


def sum_over_ranks(values: list[float], world: World) -> list[float]:
    """Element-wise sum over all ranks (identity in one process)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def finish(world: World) -> None:
    if world.distributed:
        dist.destroy_process_group()


class _AllReduceBatchNormFn(torch.autograd.Function):
    """Batch normalisation over the union of every rank's batch: the sums that make the mean and
    variance (forward) and the two that make the input gradient (backward) are all-reduced. The
    weight and bias gradients stay local: DDP averages them like any other parameter's."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        x = x.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        c = x.size(1)
        count = torch.tensor([x.numel() / c], dtype=torch.float64)
        stats = torch.cat([x.sum(dims).double(), (x * x).sum(dims).double(), count])
        dist.all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        invstd = torch.rsqrt(var + eps).float()
        xhat = (x - mean.float().view(shape)) * invstd.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.n, ctx.dims, ctx.shape = float(n), dims, shape
        y = xhat * weight.view(shape) + bias.view(shape) if weight is not None else xhat
        unbiased = var * n / torch.clamp(n - 1, min=1)
        return y, mean.float(), unbiased.float()

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        xhat, invstd, weight = ctx.saved_tensors
        dims, shape, c = ctx.dims, ctx.shape, xhat.size(1)
        grad_y = grad_y.float()
        g = grad_y * weight.view(shape) if weight is not None else grad_y
        sums = torch.cat([g.sum(dims), (g * xhat).sum(dims)]).double()
        dist.all_reduce(sums)
        mean_g, mean_gx = (sums[:c] / ctx.n).float(), (sums[c:] / ctx.n).float()
        grad_x = invstd.view(shape) * (g - mean_g.view(shape) - xhat * mean_gx.view(shape))
        if weight is None:
            return grad_x, None, None, None
        return grad_x, (grad_y * xhat).sum(dims), grad_y.sum(dims), None


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm1d/2d whose training statistics span all ranks (CPU/gloo); same parameters and
    buffers, so its state dict loads into a plain BatchNorm and back. Evaluation is plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        y, mean, var = _AllReduceBatchNormFn.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean * m)
                self.running_var.mul_(1 - m).add_(var * m)
        return y


def sync_batchnorm(module: nn.Module, world: World, cuda: bool) -> nn.Module:
    """``module`` with every BatchNorm taking its statistics over all ranks (no change in one process)."""
    if not world.distributed:
        return module
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            synced = AllReduceBatchNorm(child.num_features, child.eps, child.momentum, child.affine)
            # The very same parameter and buffer tensors: an optimiser built already keeps working.
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            setattr(module, name, synced)
        else:
            sync_batchnorm(child, world, cuda)
    return module
