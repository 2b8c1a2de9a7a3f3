"""Training and evaluation: ``train_epoch``, ``evaluate``, ``fit`` and ``load_or_train``.

The default path keeps MNIST on the device (:class:`~vae_tutorial.data.TensorLoader`) and
never waits for the device inside an epoch: the running loss stays a tensor and is read
once per epoch. Every epoch ends with a checkpoint when a path is given.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig
from .data import TensorLoader, fixed_binarized, mnist_tensors, torchvision_loader
from .loss import vae_loss
from .model import VAE
from .paths import cache_root

EVAL_SEED = 1234  # evaluation draws its own z with this seed, leaving training's RNG alone
PROGRESS_ENV = "VAE_TUTORIAL_PROGRESS"  # auto (widget in notebooks), text, or off


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


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's RNGs (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loaders(config: TrainConfig, device: torch.device, root=None):
    """Training and test loaders for ``config``. The test set is binarized once, with a
    fixed seed, when ``config.binarized``; the training set afresh every batch."""
    if config.loader == "torchvision":
        train = torchvision_loader(True, config.batch_size, True, config.binarized, root)
        if config.train_size is not None:
            train = torch.utils.data.DataLoader(
                torch.utils.data.Subset(train.dataset, range(config.train_size)),
                batch_size=config.batch_size,
                shuffle=True,
            )
    else:
        images, labels = mnist_tensors(True, root, device)
        n = config.train_size or len(images)
        train = TensorLoader(
            images[:n], labels[:n], config.batch_size, True, config.binarized, config.seed
        )
    return train, test_loader(config, device, root)


def test_loader(config: TrainConfig, device: torch.device, root=None) -> TensorLoader:
    """The 10,000 test images, in order; binarized once with a fixed seed if ``config.binarized``."""
    images, labels = mnist_tensors(False, root, device)
    if config.binarized:
        images = fixed_binarized(images)
    return TensorLoader(images, labels, batch_size=1000, shuffle=False)


def _progress(iterable, total: int, desc: str, enabled: bool):
    mode = os.environ.get(PROGRESS_ENV, "auto")
    if not enabled or mode == "off":
        return iterable
    if mode == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


def train_epoch(
    model: VAE,
    loader,
    optimizer: torch.optim.Optimizer,
    beta: float = 1.0,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader``; returns the mean per-image ``recon + beta * kl`` (nats)."""
    model.train()
    device = next(model.parameters()).device
    total, count = torch.zeros((), device=device), 0
    for x, _ in _progress(loader, len(loader), desc, progress):
        x = x.to(device, non_blocking=True)
        logits, mu, logvar = model(x)
        loss = vae_loss(logits, x, mu, logvar, beta, validate=False).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()  # stays on the device: no sync per step
        count += len(x)
    value = total.item() / count
    if not np.isfinite(value):
        raise FloatingPointError(
            f"training loss became {value}; lower the learning rate (lr) and train again"
        )
    return value


@torch.no_grad()
def evaluate(model: VAE, loader, beta: float = 1.0) -> dict[str, float]:
    """Mean per-image ``recon``, ``kl``, ``neg_elbo`` and ``loss`` (nats) over ``loader``.

    One ``z`` per image, drawn with a fixed seed, so the same model always scores the same.
    """
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    count = 0
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(EVAL_SEED)
        for x, _ in loader:
            x = x.to(device)
            logits, mu, logvar = model(x)
            terms = vae_loss(logits, x, mu, logvar, beta)
            sums += torch.stack([terms.recon.sum(), terms.kl.sum()]).double()
            count += len(x)
    recon, kl = (sums / count).tolist()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl, "loss": recon + beta * kl}


def new_history() -> dict[str, list]:
    return {
        k: []
        for k in (
            "epoch",
            "train_loss",
            "test_loss",
            "test_neg_elbo",
            "test_recon",
            "test_kl",
            "seconds",
        )
    }


def fit(
    config: TrainConfig,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool = True,
    root=None,
    on_epoch_end=None,
) -> tuple[VAE, dict]:
    """Train a :class:`VAE` as ``config`` says; return it with its history.

    With ``checkpoint``, a checkpoint is written after every epoch; with ``resume`` too,
    training continues from it (same data order and RNG, so the same final weights).
    ``history`` holds, per epoch, the mean training loss and the test loss, -ELBO, recon
    and KL, all in nats per image, and the epoch's seconds. ``on_epoch_end(epoch, model)``
    is called after each epoch (``epoch`` counts from 1), e.g. to keep snapshots.
    """
    device = select_device(device)
    seed_everything(config.seed)
    model = VAE(config.latent_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_loader, test_loader = make_loaders(config, device, root)
    history, start = new_history(), 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, device)
        if state.config.key() != config.key():
            raise CheckpointError(
                f"{checkpoint} was trained with {state.config}, not {config}; "
                "resume with the same settings or use another output folder"
            )
        model.load_state_dict(state.model.state_dict())
        optimizer.load_state_dict(state.optimizer_state)
        history, start = state.history, state.epoch
        restore_rng(state.rng_state)
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        desc = f"epoch {epoch + 1}/{config.epochs}"
        train_loss = train_epoch(model, train_loader, optimizer, config.beta, progress, desc)
        test = evaluate(model, test_loader, config.beta)
        seconds = time.perf_counter() - t0
        for key, value in zip(
            history,
            (
                epoch + 1,
                train_loss,
                test["loss"],
                test["neg_elbo"],
                test["recon"],
                test["kl"],
                seconds,
            ),
        ):
            history[key].append(value)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, config, epoch + 1, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
            model.train()
        if verbose:
            print(
                f"epoch {epoch + 1:>3}/{config.epochs}  train loss {train_loss:8.2f}  "
                f"test -ELBO {test['neg_elbo']:8.2f} (recon {test['recon']:.2f} + KL {test['kl']:.2f})"
                f"  {seconds:5.1f} s",
                flush=True,
            )
    return model, history


def cached_checkpoint(config: TrainConfig, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`load_or_train` keeps the model for ``config``: ``<cache>/vae-<key>.pt``."""
    return Path(cache_dir or cache_root()) / f"vae-{config.key()}.pt"


def load_or_train(
    config: TrainConfig,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> tuple[VAE, dict]:
    """The model ``config`` describes: loaded from the cache if it was trained before,
    else trained now (resuming an unfinished cached run) and cached as ``vae-<key>.pt``."""
    path = cached_checkpoint(config, cache_dir)
    device = select_device(device)
    if path.exists():
        try:
            state = load_checkpoint(path, device)
            if state.epoch >= config.epochs and state.config.key() == config.key():
                return state.model.eval(), state.history
        except CheckpointError:
            path.unlink()  # unreadable cache entry: train afresh
    model, history = fit(config, device, path, resume=True, progress=progress, verbose=verbose)
    return model.eval(), history
