"""The blog post "Implementing VAEs in PyTorch", reproduced faithfully so it can be run and
compared: a sigmoid at the end of the decoder, ``nn.BCELoss(reduction="sum")`` on the
probabilities, the closed-form KL, Adam, and a loop that reads ``loss.item()`` every step.

The post never defines ``latent_dim``, ``learning_rate``, ``train_loader`` or
``num_epochs``; :data:`BLOG_SETTINGS` and :func:`blog_train_loader` give them values.
The layers are the book's own :class:`~vae_tutorial.model.Encoder` and
:class:`~vae_tutorial.model.Decoder` (same architecture, same parameter names), so a
state dict moves freely between :class:`BlogVAE` and :class:`~vae_tutorial.model.VAE`.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import torchvision_loader
from .model import Decoder, Encoder, reparameterize

BLOG_SETTINGS = {"latent_dim": 20, "learning_rate": 1e-3, "batch_size": 128, "num_epochs": 10}


class BlogDecoder(Decoder):
    """The blog's decoder: the same layers, then a sigmoid, so it returns probabilities."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(z))  # (B, 1, 28, 28) in (0, 1)


class BlogVAE(nn.Module):
    """The blog's VAE: ``forward`` returns ``(x_recon, mu, logvar)`` with ``x_recon`` probabilities."""

    def __init__(self, latent_dim: int = BLOG_SETTINGS["latent_dim"]):
        super().__init__()
        self.encoder = Encoder(latent_dim)
        self.decoder = BlogDecoder(latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar)
        return self.decoder(z), mu, logvar


_bce_sum = nn.BCELoss(reduction="sum")


def blog_loss(
    x_recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """The blog's loss: ``BCE(sum over batch and pixels) + KL(sum over batch)``."""
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return _bce_sum(x_recon, x) + kld


def blog_train_loader(root=None) -> torch.utils.data.DataLoader:
    """The ``train_loader`` the post assumes: grey-level MNIST, ``ToTensor``, batch 128, shuffled."""
    return torchvision_loader(True, BLOG_SETTINGS["batch_size"], shuffle=True, root=root)


def blog_train_epoch(model: BlogVAE, loader, optimizer: torch.optim.Optimizer) -> float:
    """The blog's ``train()``: one epoch, ``loss.item()`` every step; mean loss per image."""
    model.train()
    device = next(model.parameters()).device
    train_loss = 0.0
    for x, _ in loader:
        x = x.to(device)
        optimizer.zero_grad()
        x_recon, mu, logvar = model(x)
        loss = blog_loss(x_recon, x, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)
