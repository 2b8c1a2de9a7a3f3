"""The negative ELBO of a Gaussian-encoder, Bernoulli-decoder VAE, in nats.

For one image ``x`` with encoder output ``(mu, logvar)`` and one sample ``z``::

    -ELBO(x) = -log p(x|z) + KL(q(z|x) || p(z))
             = sum_pixels BCE(logits, x) - 1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))

Functions return one value per image (shape ``(B,)``); :func:`vae_loss` also returns the
batch *sum* of ``recon + beta * kl`` that the blog post back-propagates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from .model import check_pixels


def check_targets(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every pixel of ``x`` is a probability in [0, 1]."""
    if not x.is_floating_point():
        raise ValueError(f"targets must be float pixels in [0, 1], got dtype {x.dtype}")
    check_pixels(x)


def reconstruction_nll(
    logits: torch.Tensor, x: torch.Tensor, validate: bool = True
) -> torch.Tensor:
    """``-log p(x|z)`` per image (nats), shape ``(B,)``.

    ``-log p(x|z) = -sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)]`` with
    ``p = sigmoid(logits)``, computed from the logits for numerical stability.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(x.shape)} differ")
    if validate:
        check_targets(x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, 1, 28, 28)
    return bce.flatten(1).sum(1)  # (B,)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per image (nats), shape ``(B,)``.

    ``KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``, always >= 0.
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(
            f"mu and logvar must both be (B, D); got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)  # (B,)


class VAELoss(NamedTuple):
    """``total``: batch sum of ``recon + beta * kl`` (what to back-propagate);
    ``recon`` and ``kl``: per-image terms in nats, shape ``(B,)``."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor

    @property
    def neg_elbo(self) -> torch.Tensor:
        """``-ELBO`` per image (nats), shape ``(B,)``, whatever ``beta`` was."""
        return self.recon + self.kl


def vae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    validate: bool = True,
) -> VAELoss:
    """The (beta-weighted) negative ELBO of a batch: ``sum_b recon_b + beta * kl_b``.

    ``beta = 1`` is the VAE of Kingma & Welling (2013); other values give a beta-VAE
    (Higgins et al., 2017). ``validate=False`` skips the [0, 1] check of ``x`` (a
    device-to-host sync) for data already known to be valid.
    """
    if not beta >= 0:
        raise ValueError(f"beta must be a non-negative number, got {beta!r}")
    recon = reconstruction_nll(logits, x, validate)
    kl = kl_divergence(mu, logvar)
    return VAELoss((recon + beta * kl).sum(), recon, kl)
