"""The diagrams are drawn from the model itself: every layer, in order, with its shape."""

import matplotlib

matplotlib.use("Agg")

from collections import Counter  # noqa: E402

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
    # Every layer of the encoder and of the decoder is one box with its name and output
    # shape, encoder boxes above the sampling step and decoder boxes on the bottom row.
    # Encoder and decoder share names (conv1, conv2, fc1) and two labels ("conv1 16 x 14 x
    # 14"), so the boxes are counted per row, not just looked up in the text.
    model = vt.VAE(latent_dim=20)
    shapes = layer_shapes(model, torch.zeros(1, 1, 28, 28))
    fig = architecture(shapes)
    names = {name.split(".")[1] for name, _ in shapes}  # conv1, fc_mu, ...
    rows = {"encoder": Counter(), "decoder": Counter()}
    for t in fig.axes[0].texts:
        if t.get_text().split("\n")[0] in names:  # a layer's box
            rows["encoder" if t.get_position()[1] > 1 else "decoder"][t.get_text()] += 1
    for part in rows:
        expected = Counter(
            f"{name.split('.')[1]}\n{' x '.join(map(str, shape))}"
            for name, shape in shapes
            if name.startswith(part)
        )
        assert rows[part] == expected, part
    assert sum(rows["decoder"].values()) == len(list(model.decoder.children())) == 4
    assert len(graphical_model().axes[0].patches) >= 3
