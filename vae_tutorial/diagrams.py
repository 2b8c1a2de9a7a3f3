"""The book's two diagrams, drawn by code: the graphical model of a VAE, and the network
with the shape of every tensor, read from a forward pass of the real model (so the
picture cannot drift from the code).
"""

from __future__ import annotations

from itertools import pairwise

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

from .model import VAE


def layer_shapes(model: VAE, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of the output of every layer of ``model`` for one batch ``x``, in
    the order they run: the encoder's layers, then the decoder's (shapes without the batch
    dimension)."""
    shapes, hooks = [], []
    for part in ("encoder", "decoder"):
        for name, layer in getattr(model, part).named_children():
            hook = layer.register_forward_hook(
                lambda _m, _i, out, n=f"{part}.{name}": shapes.append((n, tuple(out.shape[1:])))
            )
            hooks.append(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _arrow(ax, a, b, dashed=False, color="black"):
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle="-|>",
            mutation_scale=14,
            lw=1.4,
            color=color,
            linestyle="--" if dashed else "-",
            connectionstyle="arc3,rad=0.35" if dashed else None,
        )
    )


def graphical_model():
    """z -> x, the generative model p(z) p(x|z), solid; x -> z, the encoder q(z|x), dashed;
    inside a plate repeated for each of the N images."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.add_patch(Rectangle((0.2, 0.15), 3.6, 2.6, fill=False, lw=1))
    ax.text(3.7, 0.25, "N images", ha="right", fontsize=9)
    for (x, y), label, shaded in [((2.0, 2.0), "$z$", False), ((2.0, 0.75), "$x$", True)]:
        ax.add_patch(Circle((x, y), 0.38, facecolor="0.8" if shaded else "white", ec="black"))
        ax.text(x, y, label, ha="center", va="center", fontsize=15)
    _arrow(ax, (2.0, 1.6), (2.0, 1.15))
    _arrow(ax, (2.35, 0.9), (2.35, 1.85), dashed=True, color="tab:blue")
    ax.text(1.45, 1.4, r"$p_\theta(x \mid z)$", ha="right", va="center", fontsize=11)
    ax.text(2.85, 1.4, r"$q_\phi(z \mid x)$", ha="left", va="center", fontsize=11, color="tab:blue")
    ax.text(2.0, 2.55, r"$p(z) = \mathcal{N}(0, I)$", ha="center", fontsize=11)
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 3)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


def _box(ax, x, y, w, text, color):
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - 0.32), w, 0.64, boxstyle="round,pad=0.04", fc=color, ec="0.3", lw=0.8
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5)


def architecture(shapes: list[tuple[str, tuple[int, ...]]]):
    """The encoder on the top row, the decoder on the bottom row (right to left), each layer
    a box with its output shape (from :func:`layer_shapes`), the sampling step between them
    and the two terms of the loss."""
    enc = [(n.split(".")[1], s) for n, s in shapes if n.startswith("encoder")]
    dec = [(n.split(".")[1], s) for n, s in shapes if n.startswith("decoder")]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    step, top, bottom = 1.45, 2.0, 0.55
    where = {"image": (0.0, top)}
    _box(ax, 0.0, top, 1.1, "image x\n1 x 28 x 28", "0.92")
    for i, (name, shape) in enumerate(enc):  # conv1, conv2, fc1, then fc_mu above fc_logvar
        x = step * min(i + 1, len(enc) - 1)
        y = {"fc_mu": top + 0.55, "fc_logvar": top - 0.55}.get(name, top)
        where[f"e.{name}"] = (x, y)
        _box(ax, x, y, 1.1, _label(name, shape), "#cfe3f5")
    z_x = step * len(enc)
    where["z"] = (z_x, bottom)
    _box(ax, z_x, bottom, 1.55, "z = mu + sigma * eps\neps ~ N(0, I)", "#fde2b8")
    for i, (name, shape) in enumerate(dec):  # from z leftwards to the logits
        where[f"d.{name}"] = (z_x - step * (i + 1), bottom)
        _box(ax, *where[f"d.{name}"], 1.1, _label(name, shape), "#d5ecd4")
    chain = ["image"] + [f"e.{n}" for n, _ in enc[:-2]]
    links = list(pairwise(chain))
    links += [(chain[-1], f"e.{enc[-2][0]}"), (chain[-1], f"e.{enc[-1][0]}")]
    links += [(f"e.{enc[-2][0]}", "z"), (f"e.{enc[-1][0]}", "z")]
    dchain = ["z"] + [f"d.{n}" for n, _ in dec]
    links += list(pairwise(dchain))
    for a, b in links:
        (xa, ya), (xb, yb) = where[a], where[b]
        ax.annotate(
            "",
            (xb, yb),
            (xa, ya),
            arrowprops=dict(arrowstyle="->", lw=0.9, shrinkA=22, shrinkB=22, color="0.35"),
        )
    ax.text(z_x + 0.75, top, "KL(q(z|x) || N(0, I))\nfrom mu and logvar", fontsize=8, va="center")
    ax.text(-0.75, bottom, "BCE with x\n(summed)", fontsize=8, va="center", ha="right")
    ax.text(-0.55, top + 0.8, "encoder  q(z|x)", fontsize=9, color="tab:blue")
    ax.text(-0.55, bottom - 0.75, "decoder  p(x|z), as logits", fontsize=9, color="tab:green")
    ax.set_xlim(-2.0, z_x + 2.4)
    ax.set_ylim(-0.35, 3.0)
    ax.axis("off")
    fig.tight_layout()
    return fig


def _label(name: str, shape: tuple[int, ...]) -> str:
    return f"{name}\n{' x '.join(map(str, shape))}"
