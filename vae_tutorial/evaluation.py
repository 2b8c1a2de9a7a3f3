"""How good is a VAE, in nats: the importance-weighted bound on log p(x).

For K samples ``z_k ~ q(z|x)`` the importance weights are
``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)`` and (Burda et al., 2015)::

    log p(x) >= L_K(x) = logsumexp_k(log w_k) - log K,

with ``L_1`` the ELBO (in expectation), ``L_K`` non-decreasing in ``K`` and
``L_K -> log p(x)`` as ``K`` grows. The negative of ``L_K`` for large ``K`` is the test
NLL that papers report for binarized MNIST.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from .cvae import label_args
from .likelihood import nll as likelihood_nll
from .loss import kl_per_dim, vae_loss
from .model import VAE, check_images, check_pixels, pixel_range

LOG_2PI = math.log(2 * math.pi)
EVAL_SEED = 1234  # evaluate draws its own z with this seed, leaving training's RNG alone
CHUNK_ELEMENTS = 2**25  # decoder outputs held at once (about 128 MB of float32 logits)


@contextmanager
def seeded(device: torch.device, seed: int):
    """Run a block with the RNGs seeded by ``seed``, then put the RNG state back, so that
    an evaluation draws the same samples every time and leaves training's stream alone."""
    if device.type in ("cpu", "meta"):  # the CPU's generator is always forked
        fork = {"devices": []}
    else:  # and the generator of the accelerator in use: CUDA's, MPS's, ...
        fork = {"devices": [device.index or 0], "device_type": device.type}
    with torch.random.fork_rng(**fork):
        torch.manual_seed(seed)
        yield


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis of log N(z; mu, exp(logvar))."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


@contextmanager
def evaluating(model: torch.nn.Module):
    """Run a block with ``model`` in eval mode, then put back the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: VAE, loader, beta: float = 1.0) -> dict[str, float]:
    """Mean per-image ``recon``, ``kl``, ``neg_elbo`` and ``loss`` (nats) over ``loader``.

    One ``z`` per image, drawn with a fixed seed, so the same model always scores the same.
    The sums stay on the device and the pixels are checked once, at the end: one
    device-to-host read for the whole loader, not one per batch. The model is left in the
    mode (train or eval) it was in.
    """
    device = next(model.parameters()).device
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    pixels = torch.empty(0, device=device)
    count = 0
    with evaluating(model), seeded(device, EVAL_SEED):
        for x, y in loader:
            x = x.to(device)
            pixels = pixel_range(x, pixels)  # (2,): min and max so far
            logits, mu, logvar = model(x, *label_args(model, y, device))
            terms = vae_loss(logits, x, mu, logvar, beta, False, likelihood=model.likelihood)
            sums += torch.stack([terms.recon.sum(), terms.kl.sum()]).double()
            count += len(x)
    check_pixels(pixels)
    recon, kl = (sums / count).tolist()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl, "loss": recon + beta * kl}


@torch.no_grad()
def log_weights(
    model: VAE,
    x: torch.Tensor,
    k: int,
    chunk: int | None = None,
    y: torch.Tensor | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """``log w`` for ``k`` samples per image, shape ``(B, k)``, computed ``chunk`` samples at
    a time so that memory stays bounded for any ``k``. A conditional model needs the
    labels ``y``; its weights then bound ``log p(x|y)``. ``validate=False`` skips the check
    that pixels are in [0, 1] (a device-to-host read), for a caller that checks them itself."""
    check_images(x)
    if validate:
        check_pixels(x)
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k (importance samples per image) must be a positive integer, got {k!r}")
    labels = label_args(model, y, x.device)  # (y,) for a conditional model, else ()
    mu, logvar = model.encoder(x, *labels)  # (B, D) each
    b, d = mu.shape
    chunk = chunk or max(1, CHUNK_ELEMENTS // (b * 784))
    pieces = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(n, b, d, device=mu.device)  # (n, B, D)
        pieces.append(log_weights_at(model, x, labels, z, mu, logvar))  # (n, B)
    return torch.cat(pieces).T  # (B, k)


def log_weights_at(model: VAE, x, labels: tuple, z, mu, logvar) -> torch.Tensor:
    """``log w = log p(x|z) + log p(z) - log q(z|x)`` at given codes ``z`` (n, B, D) for the
    images ``x`` (B, 1, 28, 28) with ``q = N(mu, exp(logvar))``, shape ``(n, B)``. ``labels``
    is ``()``, or ``(y,)`` for a conditional model. Differentiable: the IWAE objective
    trains on it."""
    n, b, d = z.shape
    repeated = tuple(t.repeat(n) for t in labels)  # (n * B,): the labels of each copy
    logits = model.decoder(z.reshape(n * b, d), *repeated)  # (n * B, 1, 28, 28)
    targets = x.repeat(n, 1, 1, 1)  # (n * B, 1, 28, 28), sample-major like z
    log_px_z = -likelihood_nll(logits, targets, model.likelihood).view(n, b)  # (n, B)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))  # (n, B)
    return log_px_z + log_pz - log_normal(z, mu, logvar)


def iwae_bound(
    model: VAE,
    x: torch.Tensor,
    k: int,
    chunk: int | None = None,
    y: torch.Tensor | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """``L_K(x) = logsumexp_k log w_k - log K`` per image (nats), shape ``(B,)``."""
    return torch.logsumexp(log_weights(model, x, k, chunk, y, validate), dim=1) - math.log(k)


@torch.no_grad()
def nll_estimate(
    model: VAE, loader, k: int, seed: int = 0, chunk: int | None = None
) -> tuple[float, float]:
    """Mean ``-L_K`` over ``loader`` (nats per image) and its standard error over images.

    The per-image values stay on the device and the pixels are checked once, at the end:
    one device-to-host read for the whole loader, not one per batch. The model is put
    back in the mode (train or eval) it was in."""
    device = next(model.parameters()).device
    values, pixels = [], torch.empty(0, device=device)
    with evaluating(model), seeded(device, seed):
        for x, y in loader:
            x = x.to(device)
            pixels = pixel_range(x, pixels)  # (2,): min and max so far
            values.append(-iwae_bound(model, x, k, chunk, y, validate=False).double())  # (B,)
    check_pixels(pixels)
    nll = torch.cat(values).cpu()  # (N,)
    return nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item()


@torch.no_grad()
def kl_per_unit(model: VAE, loader) -> torch.Tensor:
    """Mean ``KL(q(z_j|x) || N(0, 1))`` of each latent coordinate over ``loader``, ``(D,)``.

    A coordinate with (almost) zero KL is *inactive*: for every ``x`` its posterior is the
    prior, so it carries no information about ``x`` (posterior collapse). The sum stays on
    the device until the end. The model is put back in the mode it was in."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluating(model):
        for x, y in loader:
            x = x.to(device)
            mu, logvar = model.encoder(x, *label_args(model, y, device))
            total = total + kl_per_dim(mu, logvar).double().sum(0)  # (D,)
            count += len(x)
    return (total / count).float().cpu()


def active_units(kl: torch.Tensor, threshold: float = 0.01) -> int:
    """How many coordinates have a mean KL above ``threshold`` nats (0.01 by default)."""
    return int((kl > threshold).sum())
