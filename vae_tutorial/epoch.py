"""One epoch of training: the loop of the training chapter, plus its checks.

Each step minimizes ``objective(model, x, y, eps, beta)`` (``objectives``; the ELBO by
default) for one batch and lets the optimizer take a step::

    for x, y in loader:
        loss = objective(model, x, y, eps, beta)   # (): summed over the batch
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        total += loss.detach()                     # stays on the device

The running loss stays a tensor on the device, and so does the number of the first step
whose loss was not finite: every ``CHECK_EVERY`` steps one read checks that the loss is
still finite. What differs on several ranks (this rank's noise, the loss scaling, the
decisions the ranks take together) is the distributed :class:`~vae_tutorial.distributed.Context`'s;
whether the model takes labels is the objective's.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .distributed import SINGLE, Context
from .objectives import ELBO, IWAE

PROGRESS_ENV = "VAE_TUTORIAL_PROGRESS"  # auto (widget in notebooks), text, or off
CHECK_EVERY = 25  # steps between the (syncing) checks that the loss is still finite


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite at ``step`` (counted from 0 in the epoch)."""

    def __init__(self, step: int, value: float, epoch: int | None = None, note: str = ""):
        self.step, self.value, self.epoch = step, value, epoch
        where = f"epoch {epoch}, step {step}" if epoch is not None else f"step {step}"
        super().__init__(
            f"the training loss became {value} at {where}; lower the learning rate (lr) "
            f"and train again{note}"
        )


@dataclass
class EpochProgress:
    """How far one epoch got: steps taken, summed loss and images (to resume mid-epoch)."""

    step: int = 0
    loss_sum: float = 0.0
    images: int = 0
    stopped: bool = False

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.images, 1)


def check_finite(first_bad: torch.Tensor, total: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLossError` if ``first_bad`` (a step, -1 for none) names a step
    whose loss was not finite. Reads the device: call it every ``CHECK_EVERY`` steps."""
    bad = int(first_bad)
    if bad >= 0:
        raise NonFiniteLossError(bad, float(total))


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    """``iterable`` with a progress bar when ``enabled`` (``$VAE_TUTORIAL_PROGRESS``: auto,
    a widget in notebooks; text; or off)."""
    mode = os.environ.get(PROGRESS_ENV, "auto")
    if not enabled or mode == "off":
        return iterable
    if mode == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    # at most one update a second: a notebook widget sends a message per update
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, mininterval=1.0)


def _batches(loader, start: int):
    """The batches of one pass over ``loader``, skipping the first ``start``."""
    if start == 0:
        return iter(loader)
    if hasattr(loader, "batches"):
        return loader.batches(start)
    return itertools.islice(iter(loader), start, None)


def run_epoch(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    beta: float | Callable[[int], float] = 1.0,
    progress: bool = False,
    desc: str = "train",
    start: EpochProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    context: Context = SINGLE,
    objective: ELBO | IWAE | None = None,
) -> EpochProgress:
    """Train over one pass of ``loader`` (from ``start.step`` on, if given).

    Each step minimizes ``objective(model, x, y, eps, beta)`` (``objectives`` module;
    the default is the ELBO, which gives a conditional model its labels ``y``). ``beta``
    weighs the KL term; a function of the step gives a schedule (KL warm-up).

    Stops early, between two steps, when ``should_stop()`` becomes true. The loss stays
    on the device; every ``CHECK_EVERY`` steps one read checks that it is still finite and
    raises :class:`NonFiniteLossError` naming the first bad step. In a distributed run
    ``context`` draws this rank's rows of the global batch's noise, scales the loss by the
    number of ranks, and makes the ranks take both decisions together.
    """
    objective = objective or ELBO()
    model.train()
    device = next(model.parameters()).device
    done = start or EpochProgress()
    total = torch.zeros((), device=device)  # the epoch's summed loss
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step
    step, images, stopped = done.step, 0, False
    for x, y in progress_bar(_batches(loader, step), len(loader) - step, desc, progress):
        x = x.to(device, non_blocking=True)
        eps = context.noise(model, loader, step)  # None: the model draws its own
        weight = beta(step) if callable(beta) else beta
        loss = objective(model, x, y, eps, weight)  # (): summed over the batch
        optimizer.zero_grad(set_to_none=True)
        context.scale(loss).backward()
        optimizer.step()
        total += loss.detach()  # stays on the device: no sync per step
        first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
        step, images = step + 1, images + len(x)
        asked = should_stop is not None and should_stop()
        at_check = step % CHECK_EVERY == 0
        if at_check:
            check_finite(context.all_max(first_bad), total)
        if context.stop(asked, at_check, device):
            stopped = True
            break
    check_finite(context.all_max(first_bad), total)
    sums = torch.stack([total.double(), torch.tensor(float(images), device=device).double()])
    loss_sum, count = context.all_sum(sums).tolist()
    return EpochProgress(step, done.loss_sum + loss_sum, done.images + int(count), stopped)


def train_epoch(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    beta: float = 1.0,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader``; returns the mean per-image ``recon + beta * kl`` (nats)."""
    return run_epoch(model, loader, optimizer, beta, progress, desc).mean_loss
