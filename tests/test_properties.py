"""Property-based tests of the loss functions: for random valid shapes and values the
results are finite and obey the mathematics; invalid values raise."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_tutorial import kl_divergence, reconstruction_nll, vae_loss

shapes = st.tuples(st.integers(1, 6), st.integers(1, 24))  # (B, D)
finite = st.floats(-30, 30, allow_nan=False, width=32)


@st.composite
def gaussians(draw):
    b, d = draw(shapes)
    mu = torch.tensor(draw(st.lists(finite, min_size=b * d, max_size=b * d))).view(b, d)
    logvar = torch.tensor(
        draw(st.lists(st.floats(-20, 20, width=32), min_size=b * d, max_size=b * d))
    ).view(b, d)
    return mu, logvar


@st.composite
def images_and_logits(draw):
    b = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.01, 200.0))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 28, 28, generator=g)
    if draw(st.booleans()):
        x = torch.bernoulli(x, generator=g)
    return scale * torch.randn(b, 1, 28, 28, generator=g), x


@settings(max_examples=200, deadline=None)
@given(gaussians())
def test_kl_is_finite_and_never_negative(pair):
    kl = kl_divergence(*pair)
    assert kl.shape == (pair[0].shape[0],)
    assert torch.isfinite(kl).all() and (kl >= 0).all()


@settings(max_examples=100, deadline=None)
@given(gaussians())
def test_kl_is_zero_only_at_the_prior(pair):
    mu, logvar = pair
    kl = kl_divergence(mu, logvar)
    at_prior = (mu == 0).all(1) & (logvar == 0).all(1)
    assert (kl[at_prior] == 0).all()
    far = (mu.abs() > 1e-2).any(1)
    assert (kl[far] > 0).all()


@settings(max_examples=100, deadline=None)
@given(images_and_logits())
def test_reconstruction_is_finite_non_negative_and_stable_for_huge_logits(pair):
    logits, x = pair
    nll = reconstruction_nll(logits, x)
    assert torch.isfinite(nll).all() and (nll >= 0).all()
    # never more than the cost of being maximally wrong on every pixel: sum |logit| + ln 2
    bound = (logits.abs() + math.log(2)).flatten(1).sum(1)
    assert (nll <= bound * (1 + 1e-5) + 1e-3).all()


@settings(max_examples=50, deadline=None)
@given(images_and_logits(), st.floats(0, 10))
def test_loss_total_is_recon_plus_beta_kl_and_neg_elbo_ignores_beta(pair, beta):
    logits, x = pair
    b = x.shape[0]
    mu, logvar = torch.randn(b, 5), torch.randn(b, 5)
    terms = vae_loss(logits, x, mu, logvar, beta=beta)
    torch.testing.assert_close(terms.total, (terms.recon + beta * terms.kl).sum())
    torch.testing.assert_close(terms.neg_elbo, terms.recon + terms.kl)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([float("nan"), float("inf"), -1e-3, 1.001, -5.0]), st.integers(0, 783))
def test_invalid_targets_raise(bad, where):
    x = torch.rand(2, 1, 28, 28)
    x.view(-1)[where] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruction_nll(torch.zeros_like(x), x)


@pytest.mark.parametrize(
    "mu_shape, logvar_shape", [((3, 4), (3, 5)), ((3,), (3,)), ((2, 3, 4), (2, 3, 4))]
)
def test_mismatched_gaussian_shapes_raise(mu_shape, logvar_shape):
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        kl_divergence(torch.zeros(mu_shape), torch.zeros(logvar_shape))
