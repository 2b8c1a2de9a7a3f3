import pytest
import torch

from vae_tutorial import VAE, Decoder, Encoder, reparameterize


@pytest.mark.parametrize("latent_dim", [2, 20])
def test_shapes_through_encoder_and_decoder(latent_dim):
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = Encoder(latent_dim)(x)
    assert mu.shape == logvar.shape == (5, latent_dim)
    logits = Decoder(latent_dim)(mu)
    assert logits.shape == (5, 1, 28, 28)
    logits, mu, logvar = VAE(latent_dim)(x)
    assert logits.shape == x.shape and mu.shape == (5, latent_dim)


def test_pictures_are_probabilities_and_the_loss_sees_logits():
    model = VAE()
    x = torch.rand(4, 1, 28, 28)
    probs = model.reconstruct(x)
    assert probs.min() >= 0 and probs.max() <= 1
    torch.testing.assert_close(probs, torch.sigmoid(model.decoder(model.encoder(x)[0])))
    logits, _, _ = model(x)
    assert logits.min() < 0 < logits.max(), "the decoder must return unsquashed logits"
    assert model.sample(3).shape == (3, 1, 28, 28)


@pytest.mark.parametrize(
    "shape, dtype, match",
    [
        ((4, 28, 28), torch.float32, r"\(B, 1, 28, 28\).*unsqueeze"),
        ((4, 3, 28, 28), torch.float32, r"\(B, 1, 28, 28\)"),
        ((4, 1, 32, 32), torch.float32, r"\(B, 1, 28, 28\), got \(4, 1, 32, 32\)"),
        ((4, 1, 28, 28), torch.uint8, r"float pixels.*/ 255"),
    ],
)
def test_wrong_images_raise_a_clear_error(shape, dtype, match):
    x = torch.zeros(shape, dtype=dtype)
    with pytest.raises(ValueError, match=match):
        VAE()(x)


@pytest.mark.parametrize("latent_dim", [0, -3, 2.5, True])
def test_latent_dim_must_be_a_positive_integer(latent_dim):
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim)


def test_decoder_rejects_codes_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        Decoder(20)(torch.zeros(3, 2))


def test_reparameterize_has_the_right_moments():
    mu, logvar = (
        torch.full((200_000, 1), 1.5),
        torch.full((200_000, 1), 2 * torch.log(torch.tensor(0.5))),
    )
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.std().item() - 0.5) < 0.01


def test_gradients_reach_the_encoder_through_the_sample():
    model = VAE()
    logits, mu, logvar = model(torch.rand(8, 1, 28, 28))
    logits.sum().backward()  # depends on mu and logvar only through z
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
