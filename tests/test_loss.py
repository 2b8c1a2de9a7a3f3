import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl
from torch.nn import functional as F

from vae_tutorial import kl_divergence, reconstruction_nll, vae_loss


def gaussians(b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g) * 2, torch.randn(b, d, generator=g)


def test_closed_form_kl_matches_torch_distributions():
    mu, logvar = gaussians()
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl_divergence(mu, logvar), torch_kl(q, p).sum(1))


def test_closed_form_kl_matches_monte_carlo():
    mu, logvar = gaussians(b=3, d=4)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((200_000,))  # (S, B, D)
    log_q = q.log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    mc = (log_q - log_p).mean(0)
    se = (log_q - log_p).std(0) / math.sqrt(z.shape[0])
    assert ((mc - kl_divergence(mu, logvar)).abs() < 5 * se).all()


def test_kl_is_zero_exactly_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 3)
    assert kl_divergence(zeros, zeros).abs().max() == 0
    mu, logvar = gaussians()
    assert (kl_divergence(mu, logvar) > 0).all()


def test_reconstruction_from_logits_equals_the_blogs_sigmoid_bce():
    g = torch.Generator().manual_seed(1)
    logits, x = torch.randn(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    per_image = reconstruction_nll(logits, x)
    assert per_image.shape == (4,)
    blog = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
    torch.testing.assert_close(per_image.sum(), blog)


def test_logits_stay_finite_where_sigmoid_saturates():
    logits = torch.full((1, 1, 28, 28), 40.0)
    x = torch.zeros(1, 1, 28, 28)
    nll = reconstruction_nll(logits, x)
    torch.testing.assert_close(nll, torch.tensor([784 * 40.0]), rtol=1e-4, atol=1e-2)


def test_vae_loss_is_the_batch_sum_with_beta_on_kl():
    g = torch.Generator().manual_seed(2)
    logits, x = torch.randn(3, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g)
    mu, logvar = gaussians(b=3, d=20)
    terms = vae_loss(logits, x, mu, logvar, beta=4.0)
    torch.testing.assert_close(terms.total, (terms.recon + 4.0 * terms.kl).sum())
    torch.testing.assert_close(terms.neg_elbo, terms.recon + terms.kl)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_targets_outside_unit_interval_raise(bad):
    x = torch.rand(2, 1, 28, 28)
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruction_nll(torch.zeros_like(x), x)


def test_negative_beta_raises():
    mu, logvar = gaussians(b=1, d=2)
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match="beta"):
        vae_loss(torch.zeros_like(x), x, mu, logvar, beta=-1)


def test_kl_per_dim_sums_to_the_kl():
    from vae_tutorial.loss import kl_per_dim

    mu, logvar = gaussians()
    per_dim = kl_per_dim(mu, logvar)
    assert per_dim.shape == mu.shape and (per_dim >= 0).all()
    torch.testing.assert_close(per_dim.sum(1), kl_divergence(mu, logvar))


def test_free_bits_only_changes_the_training_objective():
    logits = torch.randn(4, 1, 28, 28)
    x = torch.rand(4, 1, 28, 28)
    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3)
    with torch.no_grad():
        mu[:, 0] = 2.0  # coordinate 0: mean KL 2 nats, above lambda; 1 and 2: 0 nats
    plain = vae_loss(logits, x, mu, logvar)
    free = vae_loss(logits, x, mu, logvar, free_bits=0.5)
    torch.testing.assert_close(free.recon, plain.recon)
    torch.testing.assert_close(free.kl, plain.kl)  # the reported KL is the true one
    # objective: recon + B * (2 + 0.5 + 0.5) instead of recon + B * 2
    torch.testing.assert_close(free.total - plain.total, torch.tensor(4 * 1.0))
    free.total.backward()
    assert mu.grad[:, 1:].abs().max() == 0  # below lambda: nothing pulls towards the prior
    assert (mu.grad[:, 0] > 0).all()  # above lambda: the KL's gradient, mu / B * B = mu
    with pytest.raises(ValueError, match="free_bits"):
        vae_loss(logits, x, mu, logvar, free_bits=-1.0)
