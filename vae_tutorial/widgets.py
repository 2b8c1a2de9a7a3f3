"""A live latent explorer for Jupyter and Colab: two sliders, one decoded digit.

Every slider move runs the decoder in the kernel on ``z = (z_1, z_2)`` and shows
``sigmoid(decoder(z))``. It needs a running kernel; the static website uses the
self-contained :mod:`vae_tutorial.explorer` instead.
"""

from __future__ import annotations

import io

import torch
from PIL import Image


def digit_png(probs: torch.Tensor, scale: int = 6) -> bytes:
    """One ``(1, 28, 28)`` image of pixel probabilities as a PNG, black ink on white,
    each pixel drawn ``scale x scale``."""
    ink = (probs.detach().cpu().clamp(0, 1)[0] * 255).round().to(torch.uint8).numpy()
    picture = Image.fromarray(255 - ink, mode="L").resize((28 * scale, 28 * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def latent_sliders(model, limit: float = 3.0, step: float = 0.05):
    """An ipywidgets explorer of a 2-D latent space: sliders for ``z_1`` and ``z_2``, and
    the digit the decoder draws there, updated on every move."""
    import ipywidgets as widgets  # imported here: the rest of the package works without it

    if getattr(model, "latent_dim", None) != 2 or getattr(model, "conditional", False):
        raise ValueError(
            "the sliders span a 2-D latent plane: use an unconditional model with latent_dim=2 "
            f"(this one has latent_dim={getattr(model, 'latent_dim', None)})"
        )
    model.eval()
    device = next(model.parameters()).device
    sliders = [
        widgets.FloatSlider(0.0, min=-limit, max=limit, step=step, description=name)
        for name in ("z\u2081", "z\u2082")
    ]
    picture = widgets.Image(format="png", width=168, height=168)

    def update(_=None) -> None:
        z = torch.tensor([[sliders[0].value, sliders[1].value]], device=device)  # (1, 2)
        with torch.no_grad():
            picture.value = digit_png(model.decode(z)[0])

    for slider in sliders:
        slider.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox(sliders), picture])
