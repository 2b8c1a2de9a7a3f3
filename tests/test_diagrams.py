"""The diagrams are drawn from the model itself: every layer, in order, with its shape."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

import vae_tutorial as vt  # noqa: E402
from vae_tutorial.diagrams import architecture, graphical_model, layer_shapes  # noqa: E402


def test_layer_shapes_follow_the_model_and_leave_no_hooks():
    model = vt.VAE(latent_dim=3)
    shapes = layer_shapes(model, torch.zeros(2, 1, 28, 28))
    assert shapes == [
        ("encoder.conv1", (16, 14, 14)),
        ("encoder.conv2", (32, 7, 7)),
        ("encoder.fc1", (256,)),
        ("encoder.fc_mu", (3,)),
        ("encoder.fc_logvar", (3,)),
        ("decoder.fc1", (256,)),
        ("decoder.fc2", (1568,)),
        ("decoder.conv1", (16, 14, 14)),
        ("decoder.conv2", (1, 28, 28)),
    ]
    assert all(not m._forward_hooks for m in model.modules())


def test_the_diagrams_draw_every_layer():
    model = vt.VAE(latent_dim=20)
    fig = architecture(layer_shapes(model, torch.zeros(1, 1, 28, 28)))
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for name, _ in model.encoder.named_children():
        assert name in text
    assert "1 x 28 x 28" in text and "16 x 14 x 14" in text
    assert len(graphical_model().axes[0].patches) >= 3
