"""Training and evaluation: ``train_epoch``, ``evaluate``, ``fit`` and ``load_or_train``.

The default path keeps MNIST on the device (:class:`~vae_tutorial.data.TensorLoader`) and
rarely waits for it: the running loss stays a tensor, read once every ``CHECK_EVERY``
steps to check that it is finite. Every epoch ends with a checkpoint when a path is
given; Ctrl-C writes one mid-epoch; ``resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .cvae import ConditionalVAE, build_model, label_args
from .data import (
    TensorLoader,
    download_mnist,
    epoch_seed,
    fixed_binarized,
    mnist_tensors,
    torchvision_loader,
)
from .distributed import SINGLE, Context, all_max, setup, teardown
from .evaluation import evaluate
from .locks import exclusive
from .model import VAE
from .objectives import ELBO, IWAE, make_objective
from .paths import cache_root

PROGRESS_ENV = "VAE_TUTORIAL_PROGRESS"  # auto (widget in notebooks), text, or off
CHECK_EVERY = 25  # steps between the (syncing) checks that the loss is still finite


def select_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), else the best one
    available: CUDA, then Apple's MPS, then the CPU."""
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but CUDA is not available here; use cpu")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for, but MPS is not available here; use cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; use cpu, cuda, cuda:N, mps or auto")
    return device


def make_optimizer(model: VAE, lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam (Kingma & Ba, 2015) over the model's parameters; on CUDA its fused kernel
    (the same update, in one kernel launch instead of several per parameter).

    ``capturable=True`` (CUDA only) makes the Adam that a CUDA graph can capture
    (:mod:`~vae_tutorial.graphed`): its step count and ``lr`` live on the device, ``lr``
    as a 0-d tensor that :func:`set_lr` changes in place, so a new learning rate reaches
    the captured graph without capturing it again."""
    device = next(model.parameters()).device
    if capturable:
        if device.type != "cuda":
            raise ValueError(f"a capturable optimizer is for CUDA graphs; the model is on {device}")
        lr_tensor = torch.tensor(float(lr), device=device)  # 0-d float32
        return torch.optim.Adam(model.parameters(), lr=lr_tensor, fused=True, capturable=True)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type == "cuda" or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor ``lr`` is filled in place (a captured
    CUDA graph reads that tensor: replacing it by a float would go unseen)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's RNGs (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loaders(config: TrainConfig, device: torch.device, root=None, context: Context = SINGLE):
    """Training and test loaders for ``config``. The test set is binarized once, with a
    fixed seed, when ``config.binarized``; the training set afresh every batch. Either
    training loader's order in epoch ``e`` depends only on ``(config.seed, e)``."""
    if config.loader == "torchvision":
        train = torchvision_loader(
            True,
            config.batch_size,
            True,
            config.binarized,
            root,
            size=config.train_size,
            generator=torch.Generator(),
            dataset=config.dataset,
        )
    else:
        images, labels = mnist_tensors(True, root, device, config.dataset)
        n = config.train_size or len(images)
        train = TensorLoader(
            images[:n],
            labels[:n],
            config.batch_size,
            True,
            config.binarized,
            config.seed,
            context.rank,
            context.world_size,
        )
    return train, test_loader(config, device, root)


def test_loader(config: TrainConfig, device: torch.device, root=None) -> TensorLoader:
    """The 10,000 test images, in order; binarized once with a fixed seed if ``config.binarized``."""
    images, labels = mnist_tensors(False, root, device, config.dataset)
    if config.binarized:
        images = fixed_binarized(images)
    return TensorLoader(images, labels, batch_size=1000, shuffle=False)


def _set_epoch(loader, seed: int, epoch: int) -> None:
    """Fix the data order of ``epoch`` for either kind of training loader."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    elif getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(epoch_seed(seed, epoch))


def _batches(loader, start: int):
    """The batches of one pass over ``loader``, skipping the first ``start``."""
    if start == 0:
        return iter(loader)
    if hasattr(loader, "batches"):
        return loader.batches(start)
    return itertools.islice(iter(loader), start, None)


def _progress(iterable, total: int, desc: str, enabled: bool):
    mode = os.environ.get(PROGRESS_ENV, "auto")
    if not enabled or mode == "off":
        return iterable
    if mode == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    # at most one update a second: a notebook widget sends a message per update
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, mininterval=1.0)


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


def run_epoch(
    model: VAE,
    loader,
    optimizer: torch.optim.Optimizer,
    beta: float | Callable[[int], float] = 1.0,
    progress: bool = False,
    desc: str = "train",
    start: EpochProgress | None = None,
    should_stop=None,
    context: Context = SINGLE,
    objective: ELBO | IWAE | None = None,
) -> EpochProgress:
    """Train over one pass of ``loader`` (from ``start.step`` on, if given).

    Each step minimizes ``objective(model, x, labels, eps, beta)`` (``objectives`` module;
    the default is the ELBO). ``beta`` weighs the KL term; a function of the step gives a
    schedule (KL warm-up). A conditional model (``model.conditional``) is given the labels
    too: ``model(x, y)``.

    Stops early, between two steps, when ``should_stop()`` becomes true. The loss stays
    on the device; every ``CHECK_EVERY`` steps one read checks that it is still finite and
    raises :class:`NonFiniteLossError` naming the first bad step. In a distributed run
    (``context.active``) the ranks agree on both decisions, draw the noise ``eps`` for the
    whole global batch and keep their rows, and scale their loss by the number of ranks.
    """
    objective = objective or ELBO()
    model.train()
    device = next(model.parameters()).device
    inner = getattr(model, "module", model)  # the model itself, also inside DDP
    latent_dim = inner.latent_dim
    done = start or EpochProgress()
    total = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    step, images, stop = done.step, 0, False
    batches = _progress(_batches(loader, step), len(loader) - step, desc, progress)
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        labels = label_args(inner, y, device)  # (y,) for a conditional model, else ()
        eps = None  # drawn by the model, unless distributed:
        if context.active:  # the same eps as one process would draw for the global batch
            eps = torch.randn(loader.global_batch_size(step), latent_dim, device=device)
            eps = eps[context.rank :: context.world_size]  # (B, D): this rank's rows
        weight = beta(step) if callable(beta) else beta
        loss = objective(model, x, labels, eps, weight)  # (): summed over the batch
        optimizer.zero_grad(set_to_none=True)
        (loss * context.world_size if context.active else loss).backward()
        optimizer.step()
        total += loss.detach()  # stays on the device: no sync per step
        first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
        step, images = step + 1, images + len(x)
        asked = should_stop is not None and should_stop()
        if step % CHECK_EVERY == 0:
            _check_finite(all_max(first_bad, context), total)
            if context.active:
                asked = bool(all_max(torch.tensor(float(asked), device=device), context))
        elif context.active:
            asked = False  # ranks stop together, at a check
        if asked:
            stop = True
            break
    _check_finite(all_max(first_bad, context), total)
    sums = torch.stack([total.double(), torch.tensor(float(images), device=device).double()])
    if context.active:
        torch.distributed.all_reduce(sums)
    loss_sum, count = sums.tolist()
    return EpochProgress(step, done.loss_sum + loss_sum, done.images + int(count), stop)


def _check_finite(first_bad: torch.Tensor, total: torch.Tensor) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise NonFiniteLossError(bad, float(total))


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
    if not graphed:
        return run_epoch
    from .graphed import GraphedEpochs  # imported here: graphed builds on this module

    return GraphedEpochs()


def train_epoch(
    model: VAE,
    loader,
    optimizer: torch.optim.Optimizer,
    beta: float = 1.0,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader``; returns the mean per-image ``recon + beta * kl`` (nats)."""
    return run_epoch(model, loader, optimizer, beta, progress, desc).mean_loss


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
    """Train a :class:`VAE` as ``config`` says; return it with its history.

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
    train_loader, test_loader = make_loaders(config, device, root, context)
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
            _set_epoch(train_loader, config.seed, epoch)
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
            test = evaluate(model, test_loader, config.beta)
            seconds = time.perf_counter() - t0
            _record(history, epoch + 1, done.mean_loss, test, seconds)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, config, epoch + 1, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
                model.train()
            if verbose:
                print(
                    f"epoch {epoch + 1:>3}/{config.epochs}  train loss {done.mean_loss:8.2f}  "
                    f"test -ELBO {test['neg_elbo']:8.2f} (recon {test['recon']:.2f} + KL {test['kl']:.2f})"
                    f"  {seconds:5.1f} s",
                    flush=True,
                )
    return model, history


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
    for key, value in zip(history, values):
        history[key].append(value)


def cached_checkpoint(config: TrainConfig, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`load_or_train` keeps the model for ``config``: ``<cache>/vae-<key>.pt``."""
    return Path(cache_dir or cache_root()) / f"vae-{config.key()}.pt"


def load_or_train(
    config: TrainConfig,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> tuple[VAE | ConditionalVAE, dict]:
    """The model ``config`` describes: loaded from the cache if it was trained before,
    else trained now (resuming an unfinished cached run) and cached as ``vae-<key>.pt``.
    While another process trains the same model (into the same cache), this one waits for
    it and then loads its result."""
    path = cached_checkpoint(config, cache_dir)
    device = select_device(device)
    with exclusive(path):  # another process training this model: wait for it, then load
        if path.exists():
            try:
                state = load_checkpoint(path, device)
                if state.epoch >= config.epochs and state.config.key() == config.key():
                    return state.model.eval(), state.history
            except CheckpointError:
                path.unlink()  # unreadable cache entry: train afresh
        model, history = fit(config, device, path, resume=True, progress=progress, verbose=verbose)
    return model.eval(), history
