"""The importance-weighted bound: K=1 is the ELBO, the bound never falls below the
samples' mean log weight, it tightens with K, and bad input raises."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_tutorial import VAE, vae_loss
from vae_tutorial.evaluation import iwae_bound, log_weights, nll_estimate


def model_and_images(seed: int, b: int = 4, latent_dim: int = 5):
    torch.manual_seed(seed)
    model = VAE(latent_dim).eval()
    x = torch.bernoulli(torch.rand(b, 1, 28, 28) * 0.3)
    return model, x


def neg_elbo_samples(model, x, n):
    """n independent one-sample -ELBO estimates per image, shape (n, B)."""
    with torch.no_grad():
        samples = []
        for _ in range(n):
            logits, mu, logvar = model(x)
            samples.append(vae_loss(logits, x, mu, logvar).neg_elbo)
        return torch.stack(samples)


def test_k_1_is_the_elbo_in_expectation():
    model, x = model_and_images(0)
    l1 = torch.stack([iwae_bound(model, x, 1) for _ in range(3000)])  # (3000, B)
    elbo = -neg_elbo_samples(model, x, 3000)
    se = torch.sqrt(l1.var(0) / 3000 + elbo.var(0) / 3000)
    assert ((l1.mean(0) - elbo.mean(0)).abs() < 5 * se).all()


def test_the_bound_tightens_with_k():
    model, x = model_and_images(1)
    with torch.no_grad():  # a poor q (means shifted away from the posterior's): weights vary
        model.encoder.fc_mu.bias.fill_(1.5)
    means = [
        torch.stack([iwae_bound(model, x, k) for _ in range(30)]).mean(0) for k in (1, 10, 100)
    ]
    assert (means[0] < means[1]).all() and (means[1] < means[2]).all()


def test_large_k_runs_in_chunks_and_stays_finite():
    model, x = model_and_images(2, b=2)
    w = log_weights(model, x, 3000, chunk=128)
    assert w.shape == (2, 3000) and torch.isfinite(w).all()


def test_nll_estimate_reports_a_mean_and_its_standard_error():
    model, x = model_and_images(3, b=6)
    loader = [(x[:3], None), (x[3:], None)]
    nll, se = nll_estimate(model, loader, 5)
    assert math.isfinite(nll) and 0 < se < nll
    assert (nll, se) == nll_estimate(model, loader, 5), "seeded: the same every time"


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_evaluations_check_every_batch_with_one_read_at_the_end(bad):
    # the pixels are checked once, after the last batch (no per-batch host read on a
    # GPU); a bad pixel in any batch, even the first, is still refused
    from vae_tutorial.training import evaluate

    model, x = model_and_images(5, b=6)
    broken = x.clone()
    broken[0, 0, 3, 3] = bad
    loader = [(broken[:3], None), (x[3:], None)]
    with pytest.raises(ValueError, match="pixels must be numbers in"):
        nll_estimate(model, loader, 2)
    with pytest.raises(ValueError, match="pixels must be numbers in"):
        evaluate(model, loader)
    assert math.isfinite(evaluate(model, [(x[:3], None), (x[3:], None)])["neg_elbo"])


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_raises(k):
    model, x = model_and_images(4, b=1)
    with pytest.raises(ValueError, match="k"):
        iwae_bound(model, x, k)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 64), st.integers(1, 3))
def test_the_bound_is_at_least_the_mean_log_weight(seed, k, b):
    model, x = model_and_images(seed, b=b)
    torch.manual_seed(seed)
    w = log_weights(model, x, k)
    bound = torch.logsumexp(w, 1) - math.log(k)
    assert torch.isfinite(bound).all()
    assert (bound >= w.mean(1) - 1e-3).all()  # Jensen, for the very same samples


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_elbo_is_below_the_importance_sampled_bound_within_noise(seed):
    model, x = model_and_images(seed, b=2)
    bounds = torch.stack([iwae_bound(model, x, 50) for _ in range(40)])  # (40, B)
    elbo = -neg_elbo_samples(model, x, 400)  # (400, B)
    noise = 4 * torch.sqrt(bounds.var(0) / 40 + elbo.var(0) / 400)
    assert (elbo.mean(0) <= bounds.mean(0) + noise).all()
