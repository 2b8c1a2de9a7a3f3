"""Ground truth for a 2-D VAE: ``log p(x)`` and the true posterior by quadrature.

With two latent dimensions the marginal likelihood is a 2-D integral,

    p(x) = ∫ p(x|z) p(z) dz,

and the midpoint rule on a grid of ``n x n`` cells of sides ``h_1, h_2`` approximates it:

    p(x) ≈ h_1 h_2 Σ_ij p(x|z_ij) p(z_ij),    z_ij the centres of the cells.

Two grids do it: a coarse one over the box ``[-limit, limit]²`` (where the prior puts all
but ``1 - (1 - erfc(limit/√2))²`` of its mass, 1.1e-6 at ``limit = 5``) finds where the
integrand lives; a fine one over that region computes it. The reported error estimates
the two parts that this can miss: the discretization, as the change when the fine grid's
cells are made twice as large, and the coarse grid's mass outside the fine box. It is an
estimate, not a guarantee (a feature narrower than a coarse cell can go unseen), and mass
outside ``[-limit, limit]²`` is assumed negligible: the prior's tail does not bound it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .evaluation import evaluating, log_normal
from .likelihood import nll
from .model import VAE, check_images


@dataclass
class Quadrature:
    """``log p(x)`` of one image with an estimate of its error, and ``log p(z|x)`` on the grid."""

    log_px: float  # nats
    error: float  # nats: |log Q_h - log Q_2h| + log(1 + outside / inside)
    z: torch.Tensor  # (n, n, 2): the centres of the fine grid's cells
    log_posterior: torch.Tensor  # (n, n): log p(z|x), a density in z
    cell_area: float  # h_1 h_2

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(q || p(z|x))`` for a Gaussian ``q = N(mu, diag(exp(logvar)))`` (2-vectors), on
        the grid: ``Σ h_1 h_2 q(z) (log q(z) - log p(z|x))``, differentiable in ``mu`` and
        ``logvar``. Since ``ELBO(q) = log p(x) - KL(q || p(z|x))``, this is the gap of any
        Gaussian ``q``; it is exact up to the quadrature error where ``q``'s mass lies on
        the grid and its cells are small next to ``q``'s widths (see :meth:`q_mass`)."""
        log_q = log_normal(self.z, mu, logvar)  # (n, n)
        return (self.cell_area * log_q.exp() * (log_q - self.log_posterior)).sum()

    def q_mass(self, mu: torch.Tensor, logvar: torch.Tensor) -> float:
        """The share of ``q``'s mass that the grid sees (close to 1 where :meth:`kl` holds)."""
        return (self.cell_area * log_normal(self.z, mu, logvar).exp()).sum().item()


def cell_centres(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    """Centres of ``n x n`` equal cells tiling the box ``lo..hi`` (two 2-vectors), ``(n, n, 2)``."""
    h = (hi - lo) / n  # (2,)
    steps = torch.arange(n, dtype=lo.dtype, device=lo.device) + 0.5  # (n,)
    a, b = torch.meshgrid(lo[0] + steps * h[0], lo[1] + steps * h[1], indexing="ij")
    return torch.stack([a, b], dim=-1)  # (n, n, 2)


@contextmanager
def full_float32():
    """Full float32 arithmetic on a GPU: no TF32 in convolutions or matrix products. TF32
    keeps 10 bits of mantissa, which moves each ``log p(x|z)`` (a sum over 784 pixels) by
    hundredths of a nat: more than the grid's own error."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@torch.no_grad()
def log_joint(model: VAE, x: torch.Tensor, z: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``log p(x|z) + log p(z)`` for one image ``x`` (1, 1, 28, 28) at codes ``z`` (M, D),
    shape ``(M,)``, ``chunk`` codes at a time, in full float32 (:func:`full_float32`)."""
    pieces = []
    for part in z.split(chunk):  # (m, D)
        with full_float32():
            logits = model.decoder(part)  # (m, 1, 28, 28)
        log_px_z = -nll(logits, x.expand_as(logits), model.likelihood)  # (m,)
        log_pz = log_normal(part, torch.zeros_like(part), torch.zeros_like(part))  # (m,)
        pieces.append(log_px_z + log_pz)
    return torch.cat(pieces)


def _log_integral(model, x, lo, hi, n) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The midpoint rule on ``n x n`` cells: grid ``(n, n, 2)``, log integrand ``(n, n)``,
    and ``log Q = logsumexp(log integrand) + log(h_1 h_2)``."""
    z = cell_centres(lo, hi, n)
    values = log_joint(model, x, z.reshape(-1, 2)).double().view(n, n)
    log_area = math.log(((hi - lo) / n).prod().item())
    return z, values, torch.logsumexp(values.flatten(), 0).item() + log_area


@torch.no_grad()
def log_px_quadrature(
    model: VAE,
    x: torch.Tensor,
    n: int = 48,
    limit: float = 5.0,
    coarse: int = 40,
    margin: float = 30.0,
) -> Quadrature:
    """``log p(x)`` of one image ``x`` (1, 1, 28, 28) under a VAE with a 2-D latent space.

    The coarse grid (``coarse x coarse`` cells on ``[-limit, limit]²``) keeps the cells whose
    log integrand is within ``margin`` nats of its largest value; the fine grid (``n x n``
    cells, ``n`` even) covers their bounding box, widened by one coarse cell on each side."""
    check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"one image at a time, shape (1, 1, 28, 28); got {tuple(x.shape)}")
    if model.latent_dim != 2:
        raise ValueError(
            f"quadrature on a grid needs a 2-D latent space; this model's has {model.latent_dim}"
            " dimensions (use the IWAE bound, evaluation.nll_estimate)"
        )
    if n < 4 or n % 2:
        raise ValueError(f"n must be an even number of cells >= 4, got {n}")
    with evaluating(model):  # then back in the mode it was in
        device = next(model.parameters()).device
        x = x.to(device)
        lo = torch.full((2,), -limit, device=device)
        hi = torch.full((2,), limit, device=device)
        z_c, values_c, _ = _log_integral(model, x, lo, hi, coarse)
        keep = values_c > values_c.max() - margin  # (coarse, coarse)
        cell = (hi - lo) / coarse  # (2,)
        kept = z_c[keep]  # (m, 2): centres of the kept cells
        box_lo = torch.maximum(kept.amin(0) - 1.5 * cell, lo)  # one more cell around them
        box_hi = torch.minimum(kept.amax(0) + 1.5 * cell, hi)
        z, values, log_q = _log_integral(model, x, box_lo, box_hi, n)
        _, _, log_q_half = _log_integral(model, x, box_lo, box_hi, n // 2)
        # The coarse grid's mass outside the fine box, relative to the mass inside it
        inside = ((z_c >= box_lo) & (z_c <= box_hi)).all(-1)  # (coarse, coarse)
        outside = values_c[~inside]
        log_area_c = math.log(cell.prod().item())
        ratio = (
            math.exp(torch.logsumexp(outside, 0).item() + log_area_c - log_q) if len(outside) else 0
        )
        error = abs(log_q - log_q_half) + math.log1p(ratio)
        area = ((box_hi - box_lo) / n).prod().item()
        return Quadrature(log_q, error, z.cpu(), (values - log_q).float().cpu(), area)
