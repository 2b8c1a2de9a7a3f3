"""The cache of trained models: each :class:`~vae_tutorial.config.TrainConfig` is trained
once, into ``<cache>/vae-<key>.pt``, and loaded from there afterwards (``load_or_train``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .cvae import ConditionalVAE
from .devices import select_device
from .locks import exclusive
from .model import VAE
from .paths import cache_root
from .training import fit


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
