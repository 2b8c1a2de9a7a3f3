"""The continuous Bernoulli: a density on [0, 1] whose constant, mean and sampler agree with
numerical integration, stable at lambda = 1/2 where the closed forms are 0/0."""

import math

import pytest
import torch

from vae_tutorial.likelihood import LIKELIHOODS, cb_log_norm, cb_mean, cb_sample, nll

ETAS = [-30.0, -5.0, -1.0, -0.02, -0.01, -1e-3, 0.0, 1e-6, 0.005, 0.0101, 0.3, 2.0, 12.0, 60.0]
X = torch.linspace(0, 1, 200_001, dtype=torch.float64)  # trapezoid grid on [0, 1]


def integral(f: torch.Tensor) -> float:
    return torch.trapezoid(f, X).item()


@pytest.mark.parametrize("eta", ETAS)
def test_the_density_integrates_to_one(eta):
    logits = torch.full_like(X, eta)
    density = torch.exp(-nll(logits.view(-1, 1, 1, 1), X.view(-1, 1, 1, 1), "continuous-bernoulli"))
    # trapezoid error ~ h^2 f''/12 with h = 5e-6: far below 1e-6 even for eta = 60
    assert integral(density) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("eta", ETAS)
def test_the_mean_is_the_integral_of_x(eta):
    logits = torch.full_like(X, eta)
    density = torch.exp(
        cb_log_norm(logits)
        - torch.nn.functional.binary_cross_entropy_with_logits(logits, X, reduction="none")
    )
    assert cb_mean(torch.tensor(eta, dtype=torch.float64)).item() == pytest.approx(
        integral(X * density), abs=1e-6
    )


def test_the_series_and_the_closed_form_meet_at_the_threshold():
    # float64 just either side of |eta| = 1e-2, where the terms the series leaves
    # out (order eta^6) are below 1e-15
    below, above = (
        torch.tensor([0.01 - 1e-12], dtype=torch.float64),
        torch.tensor([0.01 + 1e-12], dtype=torch.float64),
    )
    assert cb_log_norm(below).item() == pytest.approx(cb_log_norm(above).item(), abs=1e-12)
    assert cb_mean(below).item() == pytest.approx(cb_mean(above).item(), abs=1e-12)
    assert cb_log_norm(torch.zeros(1)).item() == pytest.approx(math.log(2), abs=1e-7)
    assert cb_mean(torch.zeros(1)).item() == 0.5


def test_float32_is_finite_with_finite_gradients_everywhere():
    eta = torch.tensor([-200.0, -1e-4, 0.0, 1e-4, 200.0], requires_grad=True)
    x = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0])
    loss = nll(eta.view(-1, 1, 1, 1), x.view(-1, 1, 1, 1), "continuous-bernoulli").sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(eta.grad).all()
    assert torch.isfinite(cb_mean(eta.detach())).all()


@pytest.mark.parametrize("eta", [-40.0, -2.0, 0.0, 0.5, 3.0, 100.0])
def test_samples_have_the_mean(eta):
    n = 200_000
    logits = torch.full((n,), eta)
    x = cb_sample(logits, torch.Generator().manual_seed(0))
    assert x.min() >= 0 and x.max() <= 1
    # 5 standard errors of a mean of n draws of a variable in [0, 1] (sd <= 0.5)
    assert x.double().mean().item() == pytest.approx(
        cb_mean(torch.tensor(eta)).item(), abs=5 * 0.5 / n**0.5
    )


def test_bernoulli_is_the_blog_loss_and_an_unknown_name_is_refused():
    logits, x = torch.randn(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    assert torch.allclose(nll(logits, x), bce.sum((1, 2, 3)))
    assert LIKELIHOODS == ("bernoulli", "continuous-bernoulli")
    with pytest.raises(ValueError, match="unknown likelihood 'gaussian'; choose one of: bernoulli"):
        nll(logits, x, "gaussian")
