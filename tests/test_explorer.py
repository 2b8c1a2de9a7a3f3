import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from vae_tutorial import VAE
from vae_tutorial.cvae import ConditionalVAE
from vae_tutorial.explorer import decoded_grid, explorer_html, grid_codes, sprite_png
from vae_tutorial.widgets import digit_png, latent_sliders


@pytest.fixture
def model_2d():
    torch.manual_seed(0)
    return VAE(latent_dim=2)


def test_grid_codes_cover_the_square_top_row_first():
    z = grid_codes(3, 2.0)
    assert z.shape == (9, 2)
    assert z[0].tolist() == [-2.0, 2.0] and z[-1].tolist() == [2.0, -2.0]
    with pytest.raises(ValueError, match="n"):
        grid_codes(1, 2.0)
    with pytest.raises(ValueError, match="limit"):
        grid_codes(4, 0.0)


def test_decoded_grid_is_the_decoder_at_the_grid(model_2d):
    grid = decoded_grid(model_2d, n=4, limit=2.0)
    assert grid.shape == (4, 4, 28, 28) and grid.dtype == np.uint8
    expected = model_2d.decode(grid_codes(4, 2.0)[5:6])[0, 0] * 255  # row 1, column 1
    assert np.abs(grid[1, 1].astype(float) - expected.detach().numpy()).max() <= 0.5 + 1e-4


def test_sprite_png_holds_the_tiles_as_white_paper_black_ink(model_2d):
    grid = decoded_grid(model_2d, n=3)
    picture = np.array(Image.open(io.BytesIO(sprite_png(grid, levels=256))))
    assert picture.shape == (84, 84)
    np.testing.assert_array_equal(picture[28:56, 56:84], 255 - grid[1, 2])
    coarse = np.array(Image.open(io.BytesIO(sprite_png(grid, levels=16))), dtype=int)
    assert len(np.unique(coarse)) <= 16
    assert np.abs((255 - coarse[28:56, 56:84]) - grid[1, 2]).max() <= 255 / 30 + 0.5
    with pytest.raises(ValueError, match="levels"):
        sprite_png(grid, levels=1)


def test_explorer_html_is_self_contained(model_2d):
    mu = torch.randn(50, 2)
    labels = torch.arange(50) % 10
    html = explorer_html(model_2d, mu, labels, n=5)
    assert "http://" not in html and "https://" not in html  # no CDN, nothing fetched
    assert not re.search(r"<script[^>]+src=", html) and "<link" not in html
    png = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(png))).size == (140, 140)
    assert html.count('"points":[[') == 1 and html.count("],[") >= 49
    assert html == explorer_html(model_2d, mu, labels, n=5)  # deterministic: same id, same bytes


def test_explorer_and_sliders_refuse_models_that_are_not_2d():
    with pytest.raises(ValueError, match="latent_dim=2"):
        explorer_html(VAE(latent_dim=3), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="latent_dim=2"):
        latent_sliders(ConditionalVAE(latent_dim=2))
    with pytest.raises(ValueError, match="N labels"):
        explorer_html(VAE(latent_dim=2), torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_sliders_decode_live(model_2d):
    box = latent_sliders(model_2d)
    sliders, picture = box.children[0].children, box.children[1]
    first = picture.value
    assert first == digit_png(model_2d.decode(torch.zeros(1, 2))[0])
    sliders[0].value = 2.0
    sliders[1].value = -1.5
    assert picture.value == digit_png(model_2d.decode(torch.tensor([[2.0, -1.5]]))[0])
    assert picture.value != first
