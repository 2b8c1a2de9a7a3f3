"""What a training step minimizes, one object per objective: the loop in ``epoch`` only
runs steps, and calls ``objective(model, x, y, eps, beta)`` for the batch's loss. The
objective gives a conditional model the labels ``y`` (``cvae.label_args``); a plain VAE
ignores them.

- :class:`ELBO`: the negative ELBO, ``sum_b recon_b + beta * kl_b`` (Kingma & Welling, 2013),
  with the KL weight ``beta`` (a beta-VAE, or a warm-up) and optional free bits
  (``loss.vae_loss``).
- :class:`IWAE`: the negative importance-weighted bound with ``k`` samples per image
  (Burda et al., 2016), ``-sum_b L_k(x_b)``, where
  ``L_k(x) = log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``.
  ``L_1`` is the ELBO (with a sampled KL); ``L_k`` grows with ``k`` towards ``log p(x)``.

Each returns a 0-d tensor, summed over the batch, from the model's logits; neither reads
anything back to the host, so both run inside a CUDA graph.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from .cvae import label_args
from .distributed import global_mean
from .evaluation import CHUNK_ELEMENTS, log_weights_at
from .loss import vae_loss
from .model import reparameterize


@dataclass(frozen=True)
class ELBO:
    """``-ELBO`` summed over the batch, with ``beta`` and ``free_bits`` as in ``vae_loss``.

    For a model wrapped in ``DistributedDataParallel`` the free-bits floor is decided on
    the global batch's mean KL per coordinate (``distributed.global_mean``), as one
    process decides it."""

    free_bits: float = 0.0

    def __call__(self, model, x, y=None, eps=None, beta=1.0) -> torch.Tensor:
        inner = getattr(model, "module", model)  # the model itself, also inside DDP
        labels = label_args(inner, y, x.device)  # (y,) for a conditional model, else ()
        logits, mu, logvar = model(x, *labels, eps)  # (B, 1, 28, 28), (B, D), (B, D)
        batch_mean = None
        if self.free_bits and isinstance(model, DistributedDataParallel):
            batch_mean = functools.partial(global_mean, group=model.process_group)
        terms = vae_loss(
            logits, x, mu, logvar, beta, False, self.free_bits, inner.likelihood, batch_mean
        )
        return terms.total


@dataclass(frozen=True)
class IWAE:
    """``-sum_b L_k(x_b)``: the importance-weighted bound with ``k`` samples per image.

    The ``k * B`` codes go through the decoder ``chunk`` samples of each image at a time
    (by default as many as keep about 2**25 decoder outputs at once, as the evaluation
    does), so memory stays bounded for any ``k``: with more than one chunk, each chunk's
    decoder activations are recomputed in the backward pass (``torch.utils.checkpoint``)
    instead of kept. The noise is drawn for all ``k`` samples at once, so the loss and its
    gradients do not depend on ``chunk``. ``beta`` must be 1 (the bound has no KL term to
    weigh; any other value is refused); ``eps`` is not supported (one process).
    """

    k: int = 5
    chunk: int | None = None

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(
                f"k (importance samples per image) must be an integer >= 1, got {self.k!r}"
            )
        if self.chunk is not None and (
            isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1
        ):
            raise ValueError(f"chunk must be an integer >= 1 or None, got {self.chunk!r}")

    def __call__(self, model, x, y=None, eps=None, beta=1.0) -> torch.Tensor:
        if eps is not None:
            raise ValueError("the IWAE objective draws its own noise: train it in one process")
        if beta != 1:
            raise ValueError(
                f"the IWAE bound has no KL term for beta to weigh (got beta={beta}): train it "
                "with beta=1, or use the ELBO objective (iwae_k=1) for a beta-VAE or a warm-up"
            )
        inner = getattr(model, "module", model)
        labels = label_args(inner, y, x.device)  # (y,) for a conditional model, else ()
        mu, logvar = inner.encoder(x, *labels)  # (B, D) each
        b, d = mu.shape
        z = reparameterize(mu.expand(self.k, b, d), logvar.expand(self.k, b, d))  # (k, B, D)
        chunk = self.chunk or max(1, CHUNK_ELEMENTS // (b * x[0].numel()))
        if chunk >= self.k:
            log_w = log_weights_at(inner, x, labels, z, mu, logvar)  # (k, B)
        else:  # bounded memory: recompute each chunk's decoder in the backward pass
            log_w = torch.cat(
                [
                    checkpoint(
                        log_weights_at, inner, x, labels, part, mu, logvar, use_reentrant=False
                    )
                    for part in z.split(chunk)  # (n, B, D) each
                ]
            )  # (k, B)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,): L_k per image
        return -bound.sum()


def make_objective(free_bits: float = 0.0, iwae_k: int = 1) -> ELBO | IWAE:
    """:class:`IWAE` when ``iwae_k > 1``, else :class:`ELBO` (with ``free_bits``)."""
    if iwae_k > 1:
        if free_bits:
            raise ValueError("free bits weigh the ELBO's KL term; the IWAE bound has none")
        return IWAE(iwae_k)
    return ELBO(free_bits)
