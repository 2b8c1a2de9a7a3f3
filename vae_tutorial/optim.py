"""The optimizer of every run: Adam, and a learning rate that a captured CUDA graph sees."""

from __future__ import annotations

import torch


def make_optimizer(model: torch.nn.Module, lr: float, capturable: bool = False) -> torch.optim.Adam:
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
