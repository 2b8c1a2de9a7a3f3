"""The negative ELBO of a Gaussian-encoder, Bernoulli-decoder VAE, in nats.

For one image ``x`` with encoder output ``(mu, logvar)`` and one sample ``z``::

    -ELBO(x) = -log p(x|z) + KL(q(z|x) || p(z))
             = sum_pixels BCE(logits, x) - 1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))

Functions return one value per image (shape ``(B,)``); :func:`vae_loss` also returns the
batch *sum* of ``recon + beta * kl`` that the blog post back-propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

from .likelihood import nll as likelihood_nll
from .model import check_pixels


def check_targets(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every pixel of ``x`` is a probability in [0, 1]."""
    if not x.is_floating_point():
        raise ValueError(f"targets must be float pixels in [0, 1], got dtype {x.dtype}")
    check_pixels(x)


def reconstruction_nll(
    logits: torch.Tensor, x: torch.Tensor, validate: bool = True, likelihood: str = "bernoulli"
) -> torch.Tensor:
    """``-log p(x|z)`` per image (nats), shape ``(B,)``.

    ``-log p(x|z) = -sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)]`` with
    ``p = sigmoid(logits)``, computed from the logits for numerical stability. With
    ``likelihood="continuous-bernoulli"`` it subtracts ``sum_i log C(p_i)`` too, which
    makes ``p(x|z)`` a density on grey levels (``likelihood`` module).
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(x.shape)} differ")
    if validate:
        check_targets(x)
    if likelihood != "bernoulli":
        return likelihood_nll(logits, x, likelihood)  # (B,)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, 1, 28, 28)
    return bce.flatten(1).sum(1)  # (B,)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(q(z_j|x) || N(0, 1))`` for every image and latent coordinate, shape ``(B, D)``.

    ``KL_j = -1/2 (1 + logvar_j - mu_j^2 - exp(logvar_j))``, each >= 0; 0 exactly when
    ``q(z_j|x)`` is the prior, ``mu_j = 0`` and ``logvar_j = 0``.
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(
            f"mu and logvar must both be (B, D); got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, D)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per image (nats), shape ``(B,)``.

    ``KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``, always >= 0.
    """
    return kl_per_dim(mu, logvar).sum(1)  # (B,)


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
    beta: float | torch.Tensor = 1.0,
    validate: bool = True,
    free_bits: float = 0.0,
    likelihood: str = "bernoulli",
    batch_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> VAELoss:
    """The (beta-weighted) negative ELBO of a batch: ``sum_b recon_b + beta * kl_b``.

    ``beta = 1`` is the VAE of Kingma & Welling (2013); other values give a beta-VAE
    (Higgins et al., 2017). ``validate=False`` skips the [0, 1] check of ``x`` (a
    device-to-host sync) for data already known to be valid.

    ``free_bits = lambda > 0`` (Kingma et al., 2016) trains with
    ``sum_b recon_b + beta * B * sum_j max(lambda, mean_b KL_bj)``: a coordinate whose
    batch-mean KL is below ``lambda`` nats costs a constant, so nothing pushes it to the
    prior. Only ``total`` changes; ``recon`` and ``kl`` stay the true per-image terms.
    ``batch_mean(kl_bd)`` gives the mean KL per coordinate that decides the floor, when the
    batch is larger than ``x`` (under ``torchrun``: ``distributed.global_mean`` over the
    ranks); by default it is this batch's mean.

    ``beta`` may be a 0-d tensor on the device (a KL schedule changed in place, as the
    CUDA-graph step does); it is then not checked, since reading it would wait for the device.
    """
    if not isinstance(beta, torch.Tensor) and not beta >= 0:
        raise ValueError(f"beta must be a non-negative number, got {beta!r}")
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be a non-negative number of nats, got {free_bits!r}")
    recon = reconstruction_nll(logits, x, validate, likelihood)
    kl_bd = kl_per_dim(mu, logvar)  # (B, D)
    kl = kl_bd.sum(1)  # (B,)
    if free_bits > 0:
        mean = kl_bd.mean(0)  # (D,): mean KL of each coordinate over the batch
        whole = mean.detach() if batch_mean is None else batch_mean(kl_bd)  # (D,), detached
        floored = whole < free_bits  # these cost free_bits each: a constant, no gradient
        kl_term = len(kl_bd) * torch.where(floored, free_bits, mean).sum()
    else:
        kl_term = kl.sum()
    return VAELoss(recon.sum() + beta * kl_term, recon, kl)
