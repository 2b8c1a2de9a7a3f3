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

import math

import torch
from torch.nn import functional as F

LIKELIHOODS = ("bernoulli", "continuous-bernoulli")
SERIES_BELOW = 0.5  # |eta| below which the Taylor series replace the closed forms
SAMPLE_SERIES_BELOW = 1e-8  # |eta| below which the sampler's inverse CDF uses its series
# B_2, B_4, ..., B_20, the Bernoulli numbers, give the Taylor coefficients (n = 1..10) of
# log C = log 2 + sum_n c_n eta^(2n) and of E[x] = 1/2 + sum_n m_n eta^(2n-1):
BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510)
BERNOULLI += (43867 / 798, -174611 / 330)
LOG_NORM_SERIES = tuple(  # c_n = B_2n (2^2n - 2) / (2n (2n)!): 1/12, -7/1440, ...
    b * (4**n - 2) / (2 * n * math.factorial(2 * n)) for n, b in enumerate(BERNOULLI, 1)
)
MEAN_SERIES = tuple(  # m_n = B_2n / (2n)!: 1/12, -1/720, ...
    b / math.factorial(2 * n) for n, b in enumerate(BERNOULLI, 1)
)


def check_likelihood(name: str) -> str:
    """``name`` if it is one of :data:`LIKELIHOODS`, else a ``ValueError`` that lists them."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(LIKELIHOODS)}")
    return name


def power_series(t: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """``sum_n coefficients[n] t^n`` by Horner's rule."""
    total = torch.zeros_like(t)
    for c in reversed(coefficients):
        total = total * t + c
    return total


def split_at_zero(eta: torch.Tensor, below: float = SERIES_BELOW):
    """``(small, near, far)``: where ``|eta| < below``, ``eta`` there (0 elsewhere) for a
    series, and ``eta`` elsewhere (1 there) for a closed form. Each form then sees only
    values where it is finite, so no NaN reaches the gradient through the unused one."""
    small = eta.abs() < below
    near = torch.where(small, eta, torch.zeros_like(eta))
    far = torch.where(small, torch.ones_like(eta), eta)
    return small, near, far


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """``log C(lambda)`` of the continuous Bernoulli, elementwise, from ``eta = logits``.

    ``C = eta / tanh(eta / 2)``: both are 0 at ``eta = 0`` (``lambda = 1/2``), where the
    closed form is 0/0, and its gradient ``1/eta - 1/sinh(eta)`` is a difference of two
    large terms near 0. So for ``|eta| < 1/2`` it uses the Taylor series
    ``log C = log 2 + sum_n B_2n (2^2n - 2) eta^2n / (2n (2n)!)``
    ``= log 2 + eta^2/12 - 7 eta^4/1440 + ...`` (ten terms: error below 1e-18), and
    ``log |eta| - log tanh(|eta|/2)`` beyond. ``log C`` grows like ``log |eta|``.
    """
    small, near, far = split_at_zero(logits)
    closed = far.abs().log() - torch.tanh(far.abs() / 2).log()
    series = math.log(2) + near**2 * power_series(near**2, LOG_NORM_SERIES)
    return torch.where(small, series, closed)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """The continuous Bernoulli's mean ``E[x] = 1 / (1 - e^-eta) - 1 / eta`` (1/2 at 0).

    It is not ``lambda = sigmoid(eta)``: a decoder that outputs ``lambda = 0.9`` means grey
    level 0.67, which is why images shown from such a model use this mean. For
    ``|eta| < 1/2`` it uses the Taylor series ``1/2 + sum_n B_2n eta^(2n-1) / (2n)!``
    ``= 1/2 + eta/12 - eta^3/720 + ...`` (ten terms); beyond, the closed form at
    ``a = -|eta|``, as ``e^a / expm1(a) - 1/a`` (``e^a`` cannot overflow, so the value and
    gradient stay finite for any logit), mirrored as ``1 - E[x]`` for ``eta > 0``.
    """
    small, near, far = split_at_zero(logits)
    a = -far.abs()  # <= -1/2
    below_half = torch.exp(a) / torch.expm1(a) - 1 / a  # E[x] at -|eta|
    closed = torch.where(far > 0, 1 - below_half, below_half)
    series = 0.5 + near * power_series(near**2, MEAN_SERIES)
    return torch.where(small, series, closed)


def cb_sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grey levels drawn from the continuous Bernoulli by inverting its CDF
    ``F(x) = expm1(eta x) / expm1(eta)``: ``x = log1p(u expm1(eta)) / eta`` for
    ``u ~ U(0, 1)``, computed at ``a = -|eta|`` and mirrored (``1 - x``) for ``eta > 0``, so
    that ``e^eta`` never overflows. ``log1p`` and ``expm1`` keep it accurate for small
    ``|eta|``; below ``|eta| = 1e-8`` (and at 0, where it is 0/0) it is the series
    ``x = u + u (1 - u) a / 2`` (error below 1e-17). The uniforms are drawn where
    ``generator`` lives (the CPU without one), then moved to the logits' device."""
    eta = logits
    where = generator.device if generator is not None else "cpu"
    u = torch.rand(eta.shape, generator=generator, dtype=eta.dtype, device=where).to(eta.device)
    small, near, far = split_at_zero(eta, SAMPLE_SERIES_BELOW)
    a = -far.abs()  # < 0: expm1(a) cannot overflow
    closed = torch.log1p(u * torch.expm1(a)) / a  # a draw for -|eta|
    series = u - u * (1 - u) * near.abs() / 2
    y = torch.where(small, series, closed)  # 1 - y is a draw for +|eta|
    return torch.where(eta > 0, 1 - y, y).clamp(0, 1)


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
