"""A latent explorer that needs no kernel: one self-contained HTML/JavaScript block.

A model with a 2-D latent space is decoded once, in Python, at the points of an ``n x n``
grid over ``[-limit, limit]^2``. The decoded digits travel inside the page as one PNG
(a data URI), with the test set's posterior means as the points of a scatter plot.
Moving the pointer over the plane shows the digit decoded at the nearest grid point. No
network request is made: no CDN, no external script, nothing fetched.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import torch
from PIL import Image

from .plotting import plane_grid

# matplotlib's tab10, one colour per digit class (as in plotting.plot_latent_scatter)
CLASS_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def grid_codes(n: int, limit: float) -> torch.Tensor:
    """The ``n x n`` grid of 2-D codes, row-major, shape ``(n * n, 2)``: row ``i`` has
    ``z_2`` falling from ``+limit`` (top) to ``-limit``; column ``j`` has ``z_1`` rising."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n (grid points per axis) must be an integer >= 2, got {n!r}")
    if not limit > 0:
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    return plane_grid(torch.linspace(-limit, limit, n))


def check_plane_model(model) -> None:
    """Raise ``ValueError`` unless ``model`` is an unconditional VAE with a 2-D latent space
    (the only kind whose whole latent space is a plane to explore)."""
    if getattr(model, "latent_dim", None) != 2 or getattr(model, "conditional", False):
        raise ValueError(
            "a latent explorer spans a 2-D plane: use an unconditional model with latent_dim=2 "
            f"(this one has latent_dim={getattr(model, 'latent_dim', None)})"
        )


def to_ink(probs: torch.Tensor) -> np.ndarray:
    """Pixel probabilities as uint8 ink values, 0 (white paper) to 255 (certainly black)."""
    return (probs.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def png_bytes(ink: np.ndarray, scale: int = 1) -> bytes:
    """A 2-D array of ink values as a greyscale PNG, black ink on white, each pixel drawn
    ``scale x scale``."""
    picture = Image.fromarray(255 - ink, mode="L")
    if scale > 1:
        picture = picture.resize((ink.shape[1] * scale, ink.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@torch.no_grad()
def decoded_grid(model, n: int = 32, limit: float = 3.0) -> np.ndarray:
    """``sigmoid(decoder(z))`` at every grid point, as ink values ``(n, n, 28, 28)`` uint8
    (255 = certainly black). ``model`` must have a 2-D latent space."""
    check_plane_model(model)
    model.eval()
    z = grid_codes(n, limit).to(next(model.parameters()).device)
    return to_ink(model.decode(z)).reshape(n, n, 28, 28)  # decode: (n * n, 1, 28, 28)


def sprite_png(grid: np.ndarray, levels: int = 32) -> bytes:
    """Tile ``(n, n, 28, 28)`` ink values into one ``28n x 28n`` PNG, black ink on white,
    with ``levels`` grey levels (32 by default: no visible change, a PNG half the size of
    one with all 256); each value moves by at most ``255 / (2 * (levels - 1))``."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 256:
        raise ValueError(f"levels must be an integer from 2 to 256, got {levels!r}")
    n = grid.shape[0]
    step = 255 / (levels - 1)
    ink = (np.round(grid / step) * step).round().astype(np.uint8)
    return png_bytes(ink.transpose(0, 2, 1, 3).reshape(n * 28, n * 28))  # tile rows, pixel rows


def explorer_html(
    model,
    mu: torch.Tensor,
    labels: torch.Tensor,
    n: int = 32,
    limit: float = 3.0,
    size: int = 360,
    levels: int = 32,
) -> str:
    """The explorer as an HTML string: the plane of posterior means ``mu`` ``(N, 2)``
    coloured by ``labels`` ``(N,)``, and the digit decoded under the pointer."""
    if mu.ndim != 2 or mu.shape[1] != 2 or len(labels) != len(mu):
        raise ValueError(
            f"expected 2-D means (N, 2) and N labels, got {tuple(mu.shape)} and {len(labels)} labels"
        )
    png = base64.b64encode(sprite_png(decoded_grid(model, n, limit), levels)).decode("ascii")
    points = np.round(mu.detach().cpu().numpy() * 100).astype(int)  # hundredths of a unit
    data = {
        "n": n,
        "limit": limit,
        "size": size,
        "colours": CLASS_COLOURS,
        "points": [
            [int(a), int(b), int(c)] for (a, b), c in zip(points, labels.tolist(), strict=True)
        ],
    }
    payload = json.dumps(data, separators=(",", ":"))
    uid = "vae-explorer-" + hashlib.sha1((png + payload).encode()).hexdigest()[:10]
    legend = "".join(
        f'<span style="color:{colour};margin-right:6px">&#9632;&thinsp;{digit}</span>'
        for digit, colour in enumerate(CLASS_COLOURS)
    )
    return TEMPLATE.format(
        uid=uid, png=png, payload=payload, size=size, digit=size // 2, legend=legend
    )


TEMPLATE = """<div class="vae-explorer" id="{uid}" data-cell="" style="display:flex;flex-wrap:wrap;\
gap:16px;align-items:flex-start;font:14px sans-serif">
<canvas class="vae-explorer-plane" width="{size}" height="{size}" style="border:1px solid #999;\
cursor:crosshair;touch-action:none" aria-label="latent plane: move the pointer to decode"></canvas>
<div><canvas class="vae-explorer-digit" width="{digit}" height="{digit}" style="border:1px solid \
#999;image-rendering:pixelated"></canvas>
<div class="vae-explorer-readout">move the pointer over the plane</div>
<div class="vae-explorer-legend" style="margin-top:8px">{legend}</div></div>
<img class="vae-explorer-sprite" alt="" hidden src="data:image/png;base64,{png}">
</div>
<script>
(function () {{
  const root = document.getElementById("{uid}");
  const data = {payload};
  const plane = root.querySelector(".vae-explorer-plane");
  const digit = root.querySelector(".vae-explorer-digit");
  const readout = root.querySelector(".vae-explorer-readout");
  const sprite = root.querySelector(".vae-explorer-sprite");
  const S = data.size, L = data.limit, N = data.n;
  const toPx = (z1, z2) => [(z1 + L) / (2 * L) * S, (L - z2) / (2 * L) * S];
  const background = document.createElement("canvas");
  background.width = background.height = S;
  const bg = background.getContext("2d");
  bg.fillStyle = "#fff"; bg.fillRect(0, 0, S, S);
  bg.strokeStyle = "#ddd"; bg.beginPath();
  bg.moveTo(S / 2, 0); bg.lineTo(S / 2, S); bg.moveTo(0, S / 2); bg.lineTo(S, S / 2); bg.stroke();
  for (const [a, b, c] of data.points) {{
    const [x, y] = toPx(a / 100, b / 100);
    bg.fillStyle = data.colours[c]; bg.fillRect(x - 1, y - 1, 2.5, 2.5);
  }}
  bg.fillStyle = "#333"; bg.font = "12px sans-serif";
  bg.fillText("z\u2081 \u2192", S - 40, S / 2 - 6); bg.fillText("z\u2082 \u2191", S / 2 + 6, 14);
  const pc = plane.getContext("2d"), dc = digit.getContext("2d");
  dc.imageSmoothingEnabled = false;
  function show(px, py) {{
    const z1 = px / S * 2 * L - L, z2 = L - py / S * 2 * L;
    const j = Math.min(N - 1, Math.max(0, Math.round((z1 + L) / (2 * L) * (N - 1))));
    const i = Math.min(N - 1, Math.max(0, Math.round((L - z2) / (2 * L) * (N - 1))));
    pc.drawImage(background, 0, 0);
    const [gx, gy] = toPx(-L + j * 2 * L / (N - 1), L - i * 2 * L / (N - 1));
    pc.strokeStyle = "#000"; pc.lineWidth = 1.5;
    pc.strokeRect(gx - 5, gy - 5, 10, 10);
    dc.drawImage(sprite, j * 28, i * 28, 28, 28, 0, 0, digit.width, digit.height);
    root.dataset.cell = i + "," + j;
    readout.textContent = "z = (" + z1.toFixed(2) + ", " + z2.toFixed(2) + ")";
  }}
  function onPointer(event) {{
    const box = plane.getBoundingClientRect();
    show((event.clientX - box.left) * S / box.width, (event.clientY - box.top) * S / box.height);
  }}
  plane.addEventListener("pointermove", onPointer);
  plane.addEventListener("pointerdown", onPointer);
  const start = () => show(S / 2, S / 2);
  if (sprite.complete) start(); else sprite.addEventListener("load", start);
}})();
</script>
"""
