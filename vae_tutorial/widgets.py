"""A live latent explorer for Jupyter and Colab: two sliders, one decoded digit.

Every slider move runs the decoder in the kernel on ``z = (z_1, z_2)`` and shows
``sigmoid(decoder(z))``. It needs a running kernel; the static website uses the
self-contained :mod:`vae_tutorial.explorer` instead.
"""

from __future__ import annotations

import torch

from .explorer import check_plane_model, png_bytes, to_ink


def digit_png(probs: torch.Tensor, scale: int = 6) -> bytes:
    """One ``(1, 28, 28)`` image of pixel probabilities as a PNG, black ink on white,
    each pixel drawn ``scale x scale``."""
    return png_bytes(to_ink(probs)[0], scale)


def latent_sliders(model, limit: float = 3.0, step: float = 0.05):
    """An ipywidgets explorer of a 2-D latent space: sliders for ``z_1`` and ``z_2``, and
    the digit the decoder draws there, updated on every move."""
    import ipywidgets as widgets  # imported here: the rest of the package works without it

    check_plane_model(model)
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
