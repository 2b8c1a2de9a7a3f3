"""The conditional VAE (Sohn et al., 2015): encoder q(z|x, y) and decoder p(x|z, y).

The label ``y`` enters both networks as a one-hot vector, joined to the encoder's
flattened convolution features and to the decoder's latent code. The prior stays
``p(z) = N(0, I)``, so the loss is the VAE's, and ``z`` is left to carry what the label
does not say: the style (slant, width, stroke) of the digit. Shapes (C = classes)::

    x (B, 1, 28, 28) -conv1, conv2-> (B, 32, 7, 7) -flatten, join y-> (B, 1568 + C)
      -fc1-> (B, 256) -> mu, logvar (B, D);  z (B, D) -join y-> (B, D + C) -fc1-> (B, 256)
      -fc2-> (B, 32, 7, 7) -conv1, conv2-> logits (B, 1, 28, 28)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import TrainConfig
from .likelihood import check_likelihood, mean_image
from .model import VAE, check_images, check_latent_dim, check_pixels, reparameterize

NUM_CLASSES = 10


def one_hot(y: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Labels ``(B,)`` of integers in ``[0, num_classes)`` as float one-hot rows ``(B, C)``.

    The range check reads the labels (a device-to-host sync); while a CUDA graph is being
    captured it is skipped, since a capture cannot read values (the graphed training step
    gives MNIST's own labels)."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"labels must be a 1-D tensor of integers, got {got}"
            + (f" of dtype {y.dtype}" if isinstance(y, torch.Tensor) else "")
            + "; e.g. torch.tensor([3, 7])"
        )
    if y.numel() and not _capturing(y) and not bool(((y >= 0) & (y < num_classes)).all()):
        raise ValueError(
            f"labels must be in 0..{num_classes - 1}, got values from {int(y.min())} to {int(y.max())}"
        )
    return F.one_hot(y.long(), num_classes).float()


def _capturing(y: torch.Tensor) -> bool:
    """True while ``y`` is a CUDA tensor and a CUDA graph is being captured on this stream."""
    return y.is_cuda and torch.cuda.is_current_stream_capturing()


class ConditionalEncoder(nn.Module):
    """q(z|x, y): the encoder's two convolutions, then an MLP that also sees the label."""

    def __init__(self, latent_dim: int = 20, num_classes: int = NUM_CLASSES):
        super().__init__()
        check_latent_dim(latent_dim)
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7 + num_classes, 256)
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x)
        h = F.relu(self.conv1(x))  # (B, 16, 14, 14)
        h = F.relu(self.conv2(h))  # (B, 32, 7, 7)
        labels = one_hot(y, self.num_classes)  # (B, C)
        if len(labels) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels; give one label per image")
        h = torch.cat([h.flatten(1), labels], dim=1)  # (B, 1568 + C)
        h = F.relu(self.fc1(h))  # (B, 256)
        return self.fc_mu(h), self.fc_logvar(h)  # (B, D), (B, D)


class ConditionalDecoder(nn.Module):
    """p(x|z, y): the decoder, with the label joined to ``z`` before the first layer."""

    def __init__(self, latent_dim: int = 20, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)
        self.num_classes = num_classes
        self.fc1 = nn.Linear(latent_dim + num_classes, 256)
        self.fc2 = nn.Linear(256, 32 * 7 * 7)
        self.conv1 = nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"expected latent codes of shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        if len(y) != len(z):
            raise ValueError(f"{len(z)} latent codes but {len(y)} labels; give one label per code")
        h = torch.cat([z, one_hot(y, self.num_classes)], dim=1)  # (B, D + C)
        h = F.relu(self.fc1(h))  # (B, 256)
        h = F.relu(self.fc2(h)).view(-1, 32, 7, 7)  # (B, 32, 7, 7)
        h = F.relu(self.conv1(h))  # (B, 16, 14, 14)
        return self.conv2(h)  # logits (B, 1, 28, 28)


class ConditionalVAE(nn.Module):
    """``forward(x, y)`` returns ``(logits, mu, logvar)``, like :class:`~vae_tutorial.VAE`."""

    conditional = True

    def __init__(
        self, latent_dim: int = 20, num_classes: int = NUM_CLASSES, likelihood: str = "bernoulli"
    ):
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)
        self.likelihood = check_likelihood(likelihood)  # p(x|z, y): see likelihood.py
        self.num_classes = num_classes
        self.encoder = ConditionalEncoder(latent_dim, num_classes)
        self.decoder = ConditionalDecoder(latent_dim, num_classes)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(y) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels; give one label per image")
        mu, logvar = self.encoder(x, y)  # (B, D) each
        z = reparameterize(mu, logvar, eps)  # (B, D)
        return self.decoder(z, y), mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities ``sigmoid(logits)`` of digit ``y`` in style ``z``, ``(B, 1, 28, 28)``
        (for a continuous Bernoulli, its mean)."""
        return mean_image(self.decoder(z, y), self.likelihood)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One new image of each requested digit: ``z ~ N(0, I)``, decoded with label ``y``."""
        device = next(self.parameters()).device
        where = generator.device if generator is not None else "cpu"  # draw where it lives
        z = torch.randn(len(y), self.latent_dim, generator=generator, device=where).to(device)
        return self.decode(z, y.to(device))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: ``sigmoid(decoder(mu(x, y), y))``."""
        check_images(x)
        check_pixels(x)
        mu, _ = self.encoder(x, y)
        return self.decode(mu, y)


@torch.no_grad()
def digit_grid(
    model: ConditionalVAE, n_styles: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Every digit in ``n_styles`` styles: row ``c`` is label ``c``, column ``j`` decodes the
    same ``z_j ~ N(0, I)`` in every row. Returns ``(C * n_styles, 1, 28, 28)``, row-major."""
    device = next(model.parameters()).device
    where = generator.device if generator is not None else "cpu"  # draw where it lives
    z = torch.randn(n_styles, model.latent_dim, generator=generator, device=where).to(device)
    z = z.repeat(model.num_classes, 1)  # (C * S, D): rows share the styles
    y = torch.arange(model.num_classes, device=device).repeat_interleave(n_styles)  # (C * S,)
    return model.decode(z, y)


def label_args(model, y: torch.Tensor | None, device: torch.device | str) -> tuple:
    """What a model takes after the images: ``(y,)`` on ``device`` for a conditional model
    (``model.conditional``), ``()`` for a plain VAE. Call ``model(x, *label_args(...))``."""
    if not getattr(model, "conditional", False):
        return ()
    if y is None:
        raise ValueError(
            "a conditional VAE needs the labels as well as the images: pass the labels y"
        )
    return (y.to(device, non_blocking=True),)


def build_model(config: TrainConfig) -> VAE | ConditionalVAE:
    """The model a :class:`TrainConfig` describes (a fresh one, on the CPU)."""
    if config.conditional:
        return ConditionalVAE(config.latent_dim, likelihood=config.likelihood)
    return VAE(config.latent_dim, likelihood=config.likelihood)
