"""The importance-weighted bound: K=1 is the ELBO, the bound is the log mean weight of an
independent computation (torch.distributions), chunks change nothing but memory, it
tightens with K, the model is left in its mode, and bad input raises."""

import math
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal

from vae_tutorial import VAE, vae_loss
from vae_tutorial.cvae import ConditionalVAE
from vae_tutorial.evaluation import (
    evaluate,
    iwae_bound,
    kl_per_unit,
    log_weights,
    log_weights_at,
    nll_estimate,
    seeded,
)


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


def test_large_k_runs_in_chunks_with_the_weights_of_one_pass():
    # 3000 samples in chunks of 128 (23 full chunks and one of 56), against one pass of the
    # decoder over all 3000 codes drawn from the same noise: the chunks may change the
    # memory, not the weights (nor repeat a chunk's noise, nor drop or add samples)
    model, x = model_and_images(2, b=2)
    k, chunk = 3000, 128
    sizes = []
    hook = model.decoder.register_forward_hook(lambda m, i, out: sizes.append(len(out)))
    try:
        torch.manual_seed(7)
        w = log_weights(model, x, k, chunk=chunk)  # (2, 3000)
    finally:
        hook.remove()
    assert sizes == [chunk * 2] * 23 + [56 * 2], "the decoder sees one chunk at a time"
    torch.manual_seed(7)  # the same draws: one (n, B, D) block of noise per chunk
    eps = torch.cat([torch.randn(min(chunk, k - s), 2, 5) for s in range(0, k, chunk)])
    with torch.no_grad():
        mu, logvar = model.encoder(x)  # (2, 5) each
        z = mu + torch.exp(0.5 * logvar) * eps  # (3000, 2, 5)
        whole = log_weights_at(model, x, (), z, mu, logvar).T  # (2, 3000): one pass
    assert w.shape == (2, 3000) and torch.isfinite(w).all()
    torch.testing.assert_close(w, whole)  # float32 rounding only


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


def independent_log_weights(model, x, eps):
    """log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma * eps (k, B, D), written with
    torch.distributions instead of the package's formulas, shape (B, k)."""
    k, b, _ = eps.shape
    mu, logvar = model.encoder(x)  # (B, D) each
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.loc + q.scale * eps  # (k, B, D)
    logits = model.decoder(z.flatten(0, 1)).view(k, b, 1, 28, 28)
    log_px_z = Bernoulli(logits=logits).log_prob(x.expand_as(logits)).flatten(2).sum(2)  # (k, B)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)  # (k, B)
    return (log_px_z + log_pz - q.log_prob(z).sum(-1)).T


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 64), st.integers(1, 3))
def test_the_bound_is_the_log_mean_weight_of_an_independent_computation(seed, k, b):
    # L_K = log (1/K) sum_k w_k, with the weights computed independently from the same
    # noise: a wrong sign or variance, a lost log K or a transposed (B, K) fails
    model, x = model_and_images(seed, b=b)
    torch.manual_seed(seed)
    bound = iwae_bound(model, x, k)  # (B,)
    torch.manual_seed(seed)  # the same draws: (K, B, D) standard normals
    eps = torch.randn(k, b, 5)
    with torch.no_grad():
        w = independent_log_weights(model, x, eps)  # (B, K)
    assert torch.isfinite(bound).all()
    # float32 sums of 784 terms of a few nats, in another order: rounding only
    torch.testing.assert_close(bound, torch.logsumexp(w, 1) - math.log(k), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("training", [True, False])
def test_evaluations_leave_the_model_in_the_mode_it_was_in(training):
    model, x = model_and_images(6, b=4)
    model.train(training)
    loader = [(x[:2], None), (x[2:], None)]
    nll_estimate(model, loader, 3)
    assert model.training is training, "nll_estimate changed the mode"
    kl_per_unit(model, loader)
    assert model.training is training, "kl_per_unit changed the mode"


def test_a_conditional_bound_needs_one_label_per_image():
    torch.manual_seed(0)
    model, x = ConditionalVAE(latent_dim=3).eval(), torch.zeros(4, 1, 28, 28)
    with pytest.raises(ValueError, match="4 images but 3 labels; give one label per image"):
        log_weights(model, x, 2, y=torch.tensor([1, 2, 3]))
    assert log_weights(model, x, 2, y=torch.tensor([1, 2, 3, 4])).shape == (4, 2)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_elbo_is_below_the_importance_sampled_bound_within_noise(seed):
    model, x = model_and_images(seed, b=2)
    bounds = torch.stack([iwae_bound(model, x, 50) for _ in range(40)])  # (40, B)
    elbo = -neg_elbo_samples(model, x, 400)  # (400, B)
    noise = 4 * torch.sqrt(bounds.var(0) / 40 + elbo.var(0) / 400)
    assert (elbo.mean(0) <= bounds.mean(0) + noise).all()


@pytest.mark.parametrize(
    "device, forked",
    [
        ("cpu", {"devices": []}),
        ("cuda:1", {"devices": [1], "device_type": "cuda"}),
        ("mps", {"devices": [0], "device_type": "mps"}),
    ],
)
def test_seeded_forks_the_generator_of_the_device_in_use(device, forked, monkeypatch):
    # torch.manual_seed reseeds every device's generator, so seeded must put back the one
    # that training draws from: on MPS too, not only on CUDA.
    calls = []

    @contextmanager
    def fork_rng(**kwargs):
        calls.append(kwargs)
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)  # no device touched
    with seeded(torch.device(device), 1234):
        pass
    assert calls == [forked]


def test_seeded_leaves_the_cpu_stream_where_it_was():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with seeded(torch.device("cpu"), 1234):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.equal(inside, expected)
