"""The decoder's likelihoods p(x|z), per image in nats, from the decoder's logits.

- ``bernoulli``: ``p(x|z) = prod_i p_i^x_i (1 - p_i)^(1 - x_i)`` with ``p = sigmoid(logits)``,
  a probability for binary pixels. On grey pixels it is the blog's loss, but not a density:
  it does not integrate to 1 over [0, 1].
- ``continuous-bernoulli`` (Loaiza-Ganem & Cunningham, 2019): the same expression times a
  normalizing constant ``C(lambda)`` per pixel, which makes it a density on [0, 1]:
  ``p(x|lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x)``.

With the logit ``eta = log(lambda / (1 - lambda))`` the density is ``C e^(eta x) (1 - lambda)``,
an exponential family on [0, 1], and ``C = eta / tanh(eta / 2)`` (2 at eta = 0).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LIKELIHOODS = ("bernoulli", "continuous-bernoulli")
SERIES_BELOW = 1e-2  # |eta| below which the Taylor series replace the closed forms


def check_likelihood(name: str) -> str:
    """``name`` if it is one of :data:`LIKELIHOODS`, else a ``ValueError`` that lists them."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(LIKELIHOODS)}")
    return name


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """``log C(lambda)`` of the continuous Bernoulli, elementwise, from ``eta = logits``.

    ``C = eta / tanh(eta / 2)``: both are 0 at ``eta = 0`` (``lambda = 1/2``), where the
    closed form is 0/0, so near 0 it uses ``log C = log 2 + eta^2/12 - 7 eta^4/1440``
    (error below 1e-12 for ``|eta| < 1e-2``). ``log C`` grows like ``log |eta|``.
    """
    eta = logits
    small = eta.abs() < SERIES_BELOW
    safe = torch.where(small, torch.ones_like(eta), eta)  # keeps the unused branch finite
    closed = safe.abs().log() - torch.tanh(safe.abs() / 2).log()
    series = torch.log(torch.tensor(2.0, dtype=eta.dtype)) + eta**2 / 12 - 7 * eta**4 / 1440
    return torch.where(small, series, closed)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """The continuous Bernoulli's mean ``E[x] = 1 / (1 - e^-eta) - 1 / eta`` (1/2 at 0).

    It is not ``lambda = sigmoid(eta)``: a decoder that outputs ``lambda = 0.9`` means grey
    level 0.67, which is why images shown from such a model use this mean.
    """
    eta = logits
    small = eta.abs() < SERIES_BELOW
    safe = torch.where(small, torch.ones_like(eta), eta)
    closed = -1 / torch.expm1(-safe) - 1 / safe  # 1/(1 - e^-eta) = -1/expm1(-eta)
    return torch.where(small, 0.5 + eta / 12 - eta**3 / 720, closed)


def cb_sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grey levels drawn from the continuous Bernoulli by inverting its CDF:
    ``x = log(1 + u (e^eta - 1)) / eta`` for ``u ~ U(0, 1)`` (``x = u`` at ``eta = 0``),
    computed for ``-|eta|`` and mirrored (``1 - x``) for ``eta > 0``, so that ``e^eta``
    never overflows."""
    eta = logits
    u = torch.rand(eta.shape, generator=generator, dtype=eta.dtype).to(eta.device)
    small = eta.abs() < SERIES_BELOW
    a = -torch.where(small, torch.ones_like(eta), eta).abs()  # < 0: expm1(a) cannot overflow
    y = torch.log1p(u * torch.expm1(a)) / a  # a draw for -|eta|; 1 - y is one for +|eta|
    x = torch.where(eta > 0, 1 - y, y)
    return torch.where(small, u, x).clamp(0, 1)


def mean_image(logits: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """The expected image ``E[x|z]`` under the likelihood: ``sigmoid(logits)`` for the
    Bernoulli, :func:`cb_mean` for the continuous Bernoulli."""
    if check_likelihood(likelihood) == "continuous-bernoulli":
        return cb_mean(logits)
    return torch.sigmoid(logits)


def nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """``-log p(x|z)`` per image in nats, shape ``(B,)``, for ``logits`` and ``x`` of shape
    ``(B, 1, 28, 28)``: the binary cross-entropy summed over pixels, minus ``sum log C``
    for the continuous Bernoulli (a density, so this can be negative)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, 1, 28, 28)
    if check_likelihood(likelihood) == "continuous-bernoulli":
        bce = bce - cb_log_norm(logits)
    return bce.flatten(1).sum(1)  # (B,)
