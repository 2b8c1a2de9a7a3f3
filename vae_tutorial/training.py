"""Fitting a run: ``fit`` trains the model a :class:`~vae_tutorial.config.TrainConfig`
describes, epoch after epoch, and evaluates it on the test set after each one.

Every epoch ends with a checkpoint when a path is given; Ctrl-C writes one mid-epoch;
``resume`` continues exactly where a run stopped. An epoch is :func:`~vae_tutorial.epoch.run_epoch`
(the ``epoch`` module), or on CUDA the same epoch as CUDA-graph replays
(:class:`~vae_tutorial.graphed.GraphedEpochs`); under ``torchrun`` the model trains with
DistributedDataParallel (the ``distributed`` module).
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .cvae import ConditionalVAE, build_model
from .data import download_mnist
from .devices import seed_everything, select_device
from .distributed import SINGLE, Context, setup, teardown
from .epoch import EpochProgress, NonFiniteLossError, run_epoch
from .evaluation import evaluate
from .graphed import GraphedEpochs
from .loaders import make_loaders, set_epoch
from .locks import exclusive
from .model import VAE
from .objectives import IWAE, make_objective
from .optim import make_optimizer, set_lr

__all__ = ["TrainingInterrupted", "epoch_runner", "fit", "new_history", "use_cuda_graph"]


def use_cuda_graph(
    graphed: bool | None, device: torch.device, config: TrainConfig, context: Context = SINGLE
) -> bool:
    """Whether :func:`fit` trains with the CUDA-graph step (:mod:`~vae_tutorial.graphed`).

    ``graphed=None`` (auto) and ``True`` mean yes on a CUDA device, with the tensor loader,
    in one process, for the ELBO; with ``loader="torchvision"``, under ``torchrun`` or with
    the IWAE objective (``iwae_k > 1``) training is eager (a graph needs the data on the
    device and has no collective operations; the IWAE step is not captured). ``False``
    means eager. ``True`` on a device other than CUDA raises ``ValueError``."""
    if graphed and device.type != "cuda":
        raise ValueError(
            f"graphed=True: CUDA graphs need a CUDA device, and training is on {device}; "
            "use graphed=None (CUDA graphs where possible) or False"
        )
    return (
        graphed is not False
        and device.type == "cuda"
        and config.loader == "tensor"
        and not context.active
        and config.iwae_k == 1
    )


def epoch_runner(graphed: bool) -> Callable[..., EpochProgress]:
    """What trains one epoch: :func:`run_epoch`, or with ``graphed`` its CUDA-graph
    replacement :class:`~vae_tutorial.graphed.GraphedEpochs` (same arguments, same result)."""
    return GraphedEpochs() if graphed else run_epoch


def new_history() -> dict[str, list]:
    keys = ("epoch", "train_loss", "test_loss", "test_neg_elbo", "test_recon", "test_kl", "seconds")
    return {k: [] for k in keys}


class _StopOnInterrupt:
    """While active (main thread only), Ctrl-C asks training to stop after the current
    step instead of killing it mid-update; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C; ``checkpoint`` (if any) holds everything up to that step."""

    def __init__(self, checkpoint: Path | None, epoch: int, step: int):
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step
        where = (
            f"; {checkpoint} holds it, resume with resume=True (CLI: --resume)"
            if checkpoint
            else ""
        )
        super().__init__(f"training stopped in epoch {epoch}, after step {step}{where}")


def fit(
    config: TrainConfig,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool = True,
    root=None,
    on_epoch_end=None,
    graphed: bool | None = None,
) -> tuple[VAE | ConditionalVAE, dict]:
    """Train a :class:`VAE` as ``config`` says; return it (in eval mode) with its history.

    With ``checkpoint``, a checkpoint is written after every epoch, and when Ctrl-C stops
    training mid-epoch (it finishes the current step first); with ``resume`` too, training
    continues from it with the same data order and RNG state, so it ends with the same
    weights as an uninterrupted run. ``history`` holds, per epoch, the mean training loss
    and the test loss, -ELBO, recon and KL, all in nats per image, and the epoch's seconds.
    ``on_epoch_end(epoch, model)`` is called after each epoch (``epoch`` counts from 1).
    A NaN or infinite loss raises :class:`NonFiniteLossError` at once and leaves the last
    checkpoint as it was.

    On CUDA a training step is one CUDA-graph replay (:mod:`~vae_tutorial.graphed`): the
    same arithmetic and random numbers as the eager step, without its per-step launch
    overhead. ``graphed=None`` (the default) uses it wherever it can (CUDA, the tensor
    loader, one process; elsewhere training is eager); ``False`` keeps the eager step;
    ``True`` on a device other than CUDA raises ``ValueError``.

    Under ``torchrun`` this trains with DistributedDataParallel (see
    :mod:`vae_tutorial.distributed`); only rank 0 evaluates, prints, shows progress,
    writes checkpoints and calls ``on_epoch_end``, and only rank 0's history is filled.
    """
    context, device = setup(select_device(device))
    try:
        graph = use_cuda_graph(graphed, device, config, context)  # ValueError if it cannot
        # one process at a time trains into a checkpoint (ranks of one run share it)
        owner = checkpoint is not None and not context.active
        with exclusive(checkpoint) if owner else contextlib.nullcontext():
            return _fit(
                config,
                device,
                context,
                checkpoint,
                resume,
                progress,
                verbose,
                root,
                on_epoch_end,
                graph,
            )
    finally:
        teardown(context)


def _fit(config, device, context, checkpoint, resume, progress, verbose, root, on_epoch_end, graph):
    if context.active and config.loader != "tensor":
        raise ValueError("distributed training needs loader='tensor' (the default)")
    if context.active and context.is_main:
        download_mnist(root, config.dataset)  # once, before the other ranks read it
    if context.active:
        torch.distributed.barrier()
    seed_everything(config.seed)  # the same on every rank: they draw the same noise
    model = build_model(config).to(device)
    optimizer = make_optimizer(model, config.lr, capturable=graph)
    train_loader, eval_loader = make_loaders(config, device, root, context)
    run = epoch_runner(graph)  # run_epoch, or the same epoch as CUDA-graph replays
    objective = make_objective(config.free_bits, config.iwae_k)  # what each step minimizes
    if context.active and isinstance(objective, IWAE):
        raise ValueError("iwae_k > 1 trains in one process; run it without torchrun")
    history, first_epoch, partial = new_history(), 0, None
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history, first_epoch, partial = _resume(checkpoint, config, model, optimizer, device)
    net = model
    if context.active:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    main = context.is_main
    with _StopOnInterrupt() as stop:
        for epoch in range(first_epoch, config.epochs):
            t0 = time.perf_counter()
            set_epoch(train_loader, config.seed, epoch)
            set_lr(optimizer, config.lr_at(epoch))
            beta = config.beta
            if config.kl_warmup:  # a function of the step: kl_weight(epoch, step, steps)
                beta = functools.partial(config.kl_weight, epoch, steps_per_epoch=len(train_loader))
            desc = f"epoch {epoch + 1}/{config.epochs}"
            start = EpochProgress(**partial) if partial else None
            partial = None
            try:
                done = run(
                    net,
                    train_loader,
                    optimizer,
                    beta,
                    progress and main,
                    desc,
                    start,
                    stop,
                    context,
                    objective,
                )
            except NonFiniteLossError as err:
                note = f"; {checkpoint} still holds the last good state" if checkpoint else ""
                raise NonFiniteLossError(err.step, err.value, epoch + 1, note) from None
            if done.stopped:
                saved = None
                if checkpoint is not None and main:
                    now = {"step": done.step, "loss_sum": done.loss_sum, "images": done.images}
                    saved = save_checkpoint(
                        checkpoint, model, optimizer, config, epoch, history, now
                    )
                raise TrainingInterrupted(saved, epoch + 1, done.step)
            if not main:
                continue
            test = evaluate(model, eval_loader, config.beta)
            seconds = time.perf_counter() - t0
            _record(history, epoch + 1, done.mean_loss, test, seconds)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, config, epoch + 1, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model.eval())  # in eval mode, as for the test set
                model.train()
            if verbose:
                print(
                    f"epoch {epoch + 1:>3}/{config.epochs}  train loss {done.mean_loss:8.2f}  "
                    f"test -ELBO {test['neg_elbo']:8.2f} (recon {test['recon']:.2f} + KL {test['kl']:.2f})"
                    f"  {seconds:5.1f} s",
                    flush=True,
                )
    return model.eval(), history


def _resume(checkpoint, config: TrainConfig, model: VAE, optimizer, device):
    """Load ``checkpoint`` into ``model`` and ``optimizer``; restore the RNG; return
    ``(history, finished epochs, progress through the next epoch)``."""
    state = load_checkpoint(checkpoint, device)
    if not state.config.same_run(config):
        raise CheckpointError(
            f"{checkpoint} was trained with {state.config}, not {config}; "
            "resume with the same settings (only --epochs may change) or use another output folder"
        )
    model.load_state_dict(state.model.state_dict())
    load_optimizer_state(optimizer, state.optimizer_state)
    restore_rng(state.rng_state)
    return state.history, state.epoch, state.partial


def _record(history: dict, epoch: int, train_loss: float, test: dict, seconds: float) -> None:
    values = (epoch, train_loss, test["loss"], test["neg_elbo"], test["recon"], test["kl"], seconds)
    for key, value in zip(history, values, strict=False):
        history[key].append(value)
