"""The book's pictures: image grids, rows of images, loss curves and 2-D latent plots.

Each function draws one figure and returns it; in a notebook the figure shows at the end
of the cell. Images are tensors ``(N, 1, 28, 28)`` with values in [0, 1].
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def image_grid(
    images: torch.Tensor, nrow: int = 8, pad: int = 2, pad_value: float = 0.15
) -> np.ndarray:
    """Tile ``(N, 1, H, W)`` images into one ``(rows*(H+pad)-pad, nrow*(W+pad)-pad)`` array,
    separated by ``pad`` pixels of a light grey (``pad_value``; 0 is white, 1 black)."""
    images = images.detach().float().cpu()
    n, _, h, w = images.shape
    ncol, nrows = min(nrow, n), math.ceil(n / nrow)
    grid = np.full((nrows * (h + pad) - pad, ncol * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, img in enumerate(images[:, 0].numpy()):
        r, c = divmod(i, nrow)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return grid


def show_images(images: torch.Tensor, nrow: int = 8, title: str = "", scale: float = 0.9):
    """One grid of images, black digits on white like ink on paper."""
    grid = image_grid(images, nrow)
    fig, ax = plt.subplots(figsize=(scale * grid.shape[1] / 30, scale * grid.shape[0] / 30 + 0.4))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def show_rows(rows: dict[str, torch.Tensor], title: str = "", scale: float = 0.9):
    """Several labelled rows of images (e.g. originals above reconstructions)."""
    ncol = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(scale * ncol * 0.6 + 1.2, scale * len(rows) * 0.62 + 0.5),
        squeeze=False,
    )
    for ax, (label, images) in zip(axes[:, 0], rows.items(), strict=True):
        ax.imshow(image_grid(images, nrow=ncol), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def plot_history(history: dict, title: str = "Training curves"):
    """Training loss and test -ELBO (nats per image) against the epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(history["epoch"], history["train_loss"], "o-", label="train loss (mean over the epoch)")
    ax.plot(history["epoch"], history["test_neg_elbo"], "s-", label="test -ELBO (end of epoch)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_latent_scatter(mu: torch.Tensor, labels: torch.Tensor, title: str = "", ax=None):
    """Posterior means ``mu`` of a 2-D latent space, one colour per digit class."""
    mu, labels = mu.detach().cpu().numpy(), labels.detach().cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2))
    points = ax.scatter(
        mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5
    )
    ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$ (posterior mean)")
    ax.set_ylabel("$z_2$ (posterior mean)")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def plane_grid(axis: torch.Tensor) -> torch.Tensor:
    """Every pair of values of ``axis`` (rising, length ``n``) as 2-D codes, shape
    ``(n*n, 2)``, row-major: row ``i`` has ``z_2`` falling from top to bottom; column ``j``
    has ``z_1`` rising."""
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


def latent_grid(n: int = 15, edge: float = 0.03) -> torch.Tensor:
    """An ``n x n`` grid of 2-D codes at the standard normal's quantiles, shape ``(n*n, 2)``,
    laid out as :func:`plane_grid` says."""
    return plane_grid(torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(edge, 1 - edge, n)))


def plot_manifold(model, n: int = 15, title: str = "Decoded latent grid"):
    """Decode an ``n x n`` grid of 2-D codes (normal quantiles) into one picture."""
    z = latent_grid(n).to(next(model.parameters()).device)
    with torch.no_grad():
        images = model.decode(z)
    grid = image_grid(images, nrow=n, pad=0)
    q = latent_grid(n)[:, 0][:n]
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, extent=(0, n, 0, n))
    ticks = [0, n // 2, n - 1]
    ax.set_xticks([t + 0.5 for t in ticks], [f"{q[t]:.1f}" for t in ticks])
    ax.set_yticks([t + 0.5 for t in ticks], [f"{q[t]:.1f}" for t in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    fig.tight_layout()
    return fig
