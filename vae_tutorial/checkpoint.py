"""Checkpoints: everything needed to use or resume a run, written atomically.

A checkpoint holds the format version, the run's :class:`TrainConfig`, the number of
finished epochs, the model and optimizer states, the history and the RNG state. It is
written to a temporary file in the same folder, flushed to disk, then renamed over the
old one, so a crash mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .cvae import ConditionalVAE, build_model
from .model import VAE

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit: the message says why and what to do."""


@dataclass
class Checkpoint:
    config: TrainConfig
    epoch: int  # finished epochs
    model: VAE | ConditionalVAE
    optimizer_state: dict
    history: dict
    rng_state: dict
    partial: dict | None = None  # progress through an unfinished epoch, if stopped mid-epoch


def save_checkpoint(
    path: str | Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    history: dict,
    partial: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename) and return its path.

    ``epoch`` counts finished epochs; ``partial`` records how far the next one got
    (steps, summed loss, images) when training stopped in the middle of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": portable_optimizer_state(optimizer),
        "history": history,
        "partial": partial,
        "rng": {"torch": torch.get_rng_state()},
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {path}: {err.strerror or err}; "
            "free some disk space or choose another output folder"
        ) from None
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; the model is on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train one with `python -m vae_tutorial train`"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # garbage bytes can make unpickling fail in almost any way
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupted: "
            f"{str(err).splitlines()[0][:120]}); delete it and train again"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(
            f"{path} is not a vae_tutorial checkpoint; train one with `python -m vae_tutorial train`"
        )
    version = state["format_version"]
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this package's {FORMAT_VERSION}; "
            "upgrade vae_tutorial (pip install -U) to read it"
        )
    try:
        config = TrainConfig.from_dict(state["config"])
        model = build_model(config).to(device)
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} does not hold a model this package can build "
            f"({type(err).__name__}: {str(err).splitlines()[0][:120]}); train it again"
        ) from None
    return Checkpoint(
        config,
        state["epoch"],
        model,
        state["optimizer"],
        state["history"],
        state["rng"],
        state.get("partial"),
    )


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` as an ordinary optimizer would save it: every group's
    ``lr`` a float and ``capturable`` off, even when ``optimizer`` is the CUDA-graph step's
    (whose ``lr`` is a 0-d device tensor), so that any Adam can load it."""
    state = optimizer.state_dict()  # its param_groups are fresh dicts: safe to change
    for group in state["param_groups"]:
        group["lr"] = float(group["lr"])
        if group.get("capturable"):
            group["capturable"] = False
    return state


# an optimizer's settings of how it computes, not what: kept when a state is loaded into it
IMPLEMENTATION = ("capturable", "fused", "foreach", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load ``state`` (from any Adam: eager or capturable, float or tensor ``lr``) into
    ``optimizer``, which keeps its own implementation (``IMPLEMENTATION``) and, when its
    ``lr`` is a tensor, that very tensor, filled in place with the saved value: a captured
    CUDA graph reads the tensor it was captured with."""
    state = {"state": state["state"], "param_groups": [dict(g) for g in state["param_groups"]]}
    lrs = [group["lr"] for group in optimizer.param_groups]
    for saved, group in zip(state["param_groups"], optimizer.param_groups, strict=False):
        saved.update({k: group[k] for k in IMPLEMENTATION if k in group})
        saved["lr"] = float(saved["lr"])
    optimizer.load_state_dict(state)  # moves `step` to the device when capturable or fused
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        if isinstance(lr, torch.Tensor):
            lr.fill_(group["lr"])
            group["lr"] = lr


def restore_rng(rng_state: dict) -> None:
    """Put the global RNGs back where a checkpoint left them."""
    torch.set_rng_state(rng_state["torch"].cpu())
    if "cuda" in rng_state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng_state["cuda"]])
