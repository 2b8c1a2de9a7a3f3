"""Multi-process training with PyTorch's own engine: ``torch.distributed`` + DDP.

Launch the usual command under ``torchrun`` and it runs on several processes:

    torchrun --nproc_per_node=2 -m vae_tutorial train --epochs 10            # one machine
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29400 -m vae_tutorial train --epochs 10    # on each node

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` reads them,
starts the process group (NCCL on CUDA, Gloo on the CPU) and pins each process to its
GPU. The global batch of ``batch_size`` images is split between the ranks.

Why the loss is multiplied by the number of processes: the blog's loss is a *sum* over
the batch, and DDP *averages* gradients over the N ranks. Each rank sums over its B/N
images, so the average is 1/N of the gradient one process would compute for the whole
batch. Scaling each rank's loss by N gives exactly the single-process gradient, so the
same learning rate gives the same trajectory.

Free bits floor each latent coordinate's KL *averaged over the batch*. Each rank sees only
its B/N images, so the ELBO objective averages over the global batch (:func:`global_mean`,
one all-reduce of the detached per-coordinate sums) before deciding which coordinates sit
at the floor: the same decision, hence the same gradient, as one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size``; rank 0 is the main one.

    It also holds what a training step does differently on several ranks, so that the
    loop reads the same in one process: the noise of this rank's rows (:meth:`noise`),
    the loss scaling (:meth:`scale`) and the decisions the ranks take together."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def noise(self, model: torch.nn.Module, loader, step: int) -> torch.Tensor | None:
        """The noise ``eps`` of this rank's rows of global batch ``step``, ``(B_r, D)``: drawn
        for the whole global batch, as one process draws it, then the rows
        ``rank::world_size``, as the loader shards the images. ``None`` in one process: the
        model draws its own."""
        if not self.active:
            return None
        latent_dim = getattr(model, "module", model).latent_dim  # the model inside DDP
        device = next(model.parameters()).device
        eps = torch.randn(loader.global_batch_size(step), latent_dim, device=device)  # (B, D)
        return eps[self.rank :: self.world_size]  # (B_r, D)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """What to back-propagate: ``loss * world_size`` (see the module's note), so that
        DDP's average of the ranks' gradients is the one-process gradient of the batch sum."""
        return loss * self.world_size if self.active else loss

    def all_max(self, value: torch.Tensor) -> torch.Tensor:
        """The largest ``value`` over all ranks (so that every rank takes the same decision)."""
        if self.active:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over all ranks."""
        if self.active:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def stop(self, asked: bool, at_check: bool, device: torch.device) -> bool:
        """Whether to stop after this step. In one process as soon as ``asked``; on several
        ranks only at a check (``at_check``), and then all together if any rank was asked."""
        if not self.active:
            return asked
        if not at_check:
            return False
        return bool(self.all_max(torch.tensor(float(asked), device=device)))


SINGLE = Context()


def launched() -> bool:
    """True when this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group ``torchrun`` describes; return the context and this rank's device."""
    if not launched():
        return SINGLE, device
    context = Context(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return context, device


def teardown(context: Context) -> None:
    """Leave the process group (all ranks reach this together)."""
    if context.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def global_mean(rows: torch.Tensor, group=None) -> torch.Tensor:
    """The mean over the global batch of per-image ``rows`` ``(B_r, ...)``, detached: every
    rank's rows together, what one process holding the whole batch computes (up to float
    rounding). Without a process group, the mean of ``rows`` itself."""
    rows = rows.detach()
    if not (dist.is_available() and dist.is_initialized()):
        return rows.mean(0)
    count = torch.full((1,), float(len(rows)), dtype=rows.dtype, device=rows.device)
    sums = torch.cat([rows.sum(0).flatten(), count])  # (numel + 1,)
    dist.all_reduce(sums, group=group)
    return (sums[:-1] / sums[-1]).view(rows.shape[1:])
