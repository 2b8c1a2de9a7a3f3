"""The likelihood is part of the model: it sets what decode() returns and what the loss,
the evaluation and the importance-weighted bound compute; cache keys of the Bernoulli
models the book trains do not change."""

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.evaluation import log_weights
from vae_tutorial.likelihood import cb_mean, nll


def test_config_validates_the_likelihood_and_keeps_old_keys():
    assert vt.TrainConfig(epochs=10).key() == "109644431f71"
    assert vt.TrainConfig(epochs=10, likelihood="continuous-bernoulli").key() != "109644431f71"
    assert "likelihood" not in repr(vt.TrainConfig())
    with pytest.raises(ValueError, match="likelihood must be one of"):
        vt.TrainConfig(likelihood="gaussian")


def test_decode_returns_the_mean_of_the_likelihood():
    torch.manual_seed(0)
    model = vt.VAE(latent_dim=4, likelihood="continuous-bernoulli")
    z = torch.randn(3, 4)
    assert torch.allclose(model.decode(z), cb_mean(model.decoder(z)))
    bernoulli = vt.VAE(latent_dim=4)
    assert torch.equal(bernoulli.decode(z), torch.sigmoid(bernoulli.decoder(z)))
    with pytest.raises(ValueError, match="unknown likelihood"):
        vt.VAE(4, likelihood="poisson")


def test_loss_and_bound_use_the_models_likelihood():
    torch.manual_seed(0)
    model = vt.VAE(latent_dim=4, likelihood="continuous-bernoulli")
    x = torch.rand(5, 1, 28, 28)  # grey levels
    logits = model.decoder(torch.zeros(5, 4))
    terms = vt.vae_loss(
        logits, x, torch.zeros(5, 4), torch.zeros(5, 4), likelihood=model.likelihood
    )
    assert torch.allclose(terms.recon, nll(logits, x, "continuous-bernoulli"))
    w = log_weights(model, x, k=3)
    assert w.shape == (5, 3) and torch.isfinite(w).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vt.vae_loss(
            logits, x * 2, torch.zeros(5, 4), torch.zeros(5, 4), likelihood="continuous-bernoulli"
        )
