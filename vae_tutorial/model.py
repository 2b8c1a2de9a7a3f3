"""The blog post's convolutional VAE: encoder q(z|x), decoder p(x|z), reparameterization.

Shapes (B = batch size, D = latent_dim)::

    x (B, 1, 28, 28) -conv1-> (B, 16, 14, 14) -conv2-> (B, 32, 7, 7) -fc1-> (B, 256)
      -> mu, logvar (B, D) -> z (B, D) -fc1-> (B, 256) -fc2-> (B, 32, 7, 7)
      -conv1-> (B, 16, 14, 14) -conv2-> logits (B, 1, 28, 28)

The decoder returns *logits*; ``torch.sigmoid(logits)`` are the Bernoulli means (pixel
probabilities) that pictures show. The loss is computed from the logits, which is
numerically stable where ``log(sigmoid(.))`` is not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .likelihood import check_likelihood, mean_image

IMAGE_SHAPE = (1, 28, 28)


def check_images(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch of shape ``(B, 1, 28, 28)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if tuple(x.shape[1:]) != IMAGE_SHAPE or x.ndim != 4:
        hint = " (add the channel axis with x.unsqueeze(1))" if x.ndim == 3 else ""
        raise ValueError(f"expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(
            f"expected float pixels in [0, 1], got dtype {x.dtype} (use x.float() / 255)"
        )


def check_pixels(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every pixel is a number in [0, 1] (no NaN, no inf).

    One device-to-host read: used where data enter (loaders, evaluation), not per step."""
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"pixels must be numbers in [0, 1], got values from {x.min().item():g} to "
            f"{x.max().item():g} (NaN or inf included?); scale images with ToTensor() or x / 255 "
            "and do not normalise them"
        )


def pixel_range(x: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``[min, max]`` of the pixels of ``x`` and of the range ``seen`` so far, ``(2,)`` on the
    device, computed without a device-to-host read (a NaN stays a NaN). A loop that keeps it
    from ``torch.empty(0)`` on and ends with ``check_pixels(seen)`` checks every batch with
    one read instead of one per batch."""
    if x.numel() == 0:
        return seen
    now = torch.stack([x.min(), x.max()])  # (2,)
    if seen.numel() == 0:
        return now
    return torch.stack([torch.minimum(seen[0], now[0]), torch.maximum(seen[1], now[1])])


def check_latent_dim(latent_dim: int) -> int:
    """Return ``latent_dim`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    return latent_dim


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """Sample ``z ~ N(mu, diag(sigma^2))`` as ``z = mu + sigma * eps``, ``eps ~ N(0, I)``.

    ``sigma = exp(logvar / 2)``. The randomness sits in ``eps``, so gradients flow to
    ``mu`` and ``logvar`` (Kingma & Welling, 2013). Pass ``eps`` to supply the noise
    yourself (distributed training draws it for the whole global batch).
    """
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn_like(std)
    return mu + eps * std


class Encoder(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))): two stride-2 convolutions and an MLP."""

    def __init__(self, latent_dim: int = 20):
        super().__init__()
        check_latent_dim(latent_dim)
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 256)
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x)
        h = F.relu(self.conv1(x))  # (B, 16, 14, 14)
        h = F.relu(self.conv2(h))  # (B, 32, 7, 7)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, 256)
        return self.fc_mu(h), self.fc_logvar(h)  # (B, D), (B, D)


class Decoder(nn.Module):
    """p(x|z) = Bernoulli(sigmoid(logits(z))): an MLP and two transposed convolutions."""

    def __init__(self, latent_dim: int = 20):
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)
        self.fc1 = nn.Linear(latent_dim, 256)
        self.fc2 = nn.Linear(256, 32 * 7 * 7)
        self.conv1 = nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"expected latent codes of shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        h = F.relu(self.fc1(z))  # (B, 256)
        h = F.relu(self.fc2(h)).view(-1, 32, 7, 7)  # (B, 32, 7, 7)
        h = F.relu(self.conv1(h))  # (B, 16, 14, 14)
        return self.conv2(h)  # logits (B, 1, 28, 28)


class VAE(nn.Module):
    """Encoder + reparameterization + decoder. ``forward`` returns ``(logits, mu, logvar)``."""

    conditional = False  # see cvae.ConditionalVAE, whose forward also takes the labels

    def __init__(self, latent_dim: int = 20, likelihood: str = "bernoulli"):
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)
        self.likelihood = check_likelihood(likelihood)  # p(x|z): see likelihood.py
        self.encoder = Encoder(latent_dim)
        self.decoder = Decoder(latent_dim)

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)  # (B, D) each
        z = reparameterize(mu, logvar, eps)  # (B, D)
        return self.decoder(z), mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The expected image ``E[x|z]`` for latent codes ``z`` of shape (B, D): pixel
        probabilities ``sigmoid(logits)`` (for a continuous Bernoulli, its mean)."""
        return mean_image(self.decoder(z), self.likelihood)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images: ``z ~ N(0, I)`` decoded to pixel probabilities ``(n, 1, 28, 28)``.

        ``z`` is drawn where ``generator`` lives (a CUDA generator draws on the GPU; none
        draws on the CPU), then moved to the model's device."""
        device = next(self.parameters()).device
        where = generator.device if generator is not None else "cpu"  # draw where it lives
        z = torch.randn(n, self.latent_dim, generator=generator, device=where).to(device)
        return self.decode(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: ``sigmoid(decoder(mu(x)))``, shape ``(B, 1, 28, 28)``."""
        check_images(x)
        check_pixels(x)
        mu, _ = self.encoder(x)
        return self.decode(mu)
