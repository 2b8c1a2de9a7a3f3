"""The continuous Bernoulli: a density on [0, 1] whose constant, mean and sampler agree with
numerical integration, stable at lambda = 1/2 where the closed forms are 0/0; values and
gradients accurate in float32 and float64 for logits up to 5000 in size (against exact
decimal arithmetic); samples distributed as the exact CDF says, also near eta = 0."""

import math
from decimal import Context, Decimal, localcontext

import pytest
import torch

from vae_tutorial.likelihood import (
    LIKELIHOODS,
    SERIES_BELOW,
    cb_log_norm,
    cb_mean,
    cb_sample,
    nll,
)

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
    # float64 just either side of |eta| = SERIES_BELOW, where the series' dropped terms
    # are below 1e-18
    for t in (SERIES_BELOW, -SERIES_BELOW):
        below = torch.tensor([t * (1 - 1e-12)], dtype=torch.float64)
        above = torch.tensor([t * (1 + 1e-12)], dtype=torch.float64)
        assert cb_log_norm(below).item() == pytest.approx(cb_log_norm(above).item(), abs=1e-12)
        assert cb_mean(below).item() == pytest.approx(cb_mean(above).item(), abs=1e-12)
    assert cb_log_norm(torch.zeros(1)).item() == pytest.approx(math.log(2), abs=1e-7)
    assert cb_mean(torch.zeros(1)).item() == 0.5


# Exact references in decimal arithmetic with 80 significant digits (the standard library's
# decimal: no float cancellation): each returns (value, derivative in eta) as floats.
EXACT = Context(prec=80)


def exact_mean(eta: float) -> tuple[float, float]:
    """E[x] = 1/(1 - e^-eta) - 1/eta and its derivative -e^-eta/(1 - e^-eta)^2 + 1/eta^2."""
    if eta == 0:
        return 0.5, 1 / 12
    with localcontext(EXACT):
        e = Decimal(eta)
        t = (-e).exp()
        return float(1 / (1 - t) - 1 / e), float(-t / (1 - t) ** 2 + 1 / e**2)


def exact_log_norm(eta: float) -> tuple[float, float]:
    """log C = log(eta / tanh(eta/2)) and its derivative 1/eta - 1/sinh(eta)."""
    if eta == 0:
        return math.log(2), 0.0
    with localcontext(EXACT):
        e = Decimal(eta)
        up, down = (e / 2).exp(), (-e / 2).exp()
        tanh, sinh = (up - down) / (up + down), (e.exp() - (-e).exp()) / 2
        return float((e / tanh).ln()), float(1 / e - 1 / sinh)


SIZES = torch.logspace(-9, math.log10(5000), 120, dtype=torch.float64)
# both signs from 1e-9 to 5000, 0, either side of the series' threshold, and where
# float32's e^-eta overflows (eta < -88.7; trained models have logits near -4,500)
WIDE = torch.cat(
    [-SIZES, torch.zeros(1, dtype=torch.float64), SIZES]
    + [
        torch.tensor(
            [0.5, -0.5, 0.49999, -0.50001, -88.8, -89.0, 88.8, -4500.0], dtype=torch.float64
        )
    ]
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("f, exact", [(cb_mean, exact_mean), (cb_log_norm, exact_log_norm)])
def test_values_and_gradients_are_accurate_for_logits_up_to_5000(f, exact, dtype):
    eta = WIDE.to(dtype).requires_grad_(True)
    value = f(eta)
    (grad,) = torch.autograd.grad(value.sum(), eta)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    reference = torch.tensor([exact(e) for e in eta.tolist()], dtype=torch.float64)  # (N, 2)
    eps = torch.finfo(dtype).eps
    # measured: values within 1.4 eps, gradients within 43 eps (relative); the gradient
    # near |eta| = 1/2 is a difference of terms about 25-50 times larger than it
    torch.testing.assert_close(value.double(), reference[:, 0], rtol=4 * eps, atol=0)
    torch.testing.assert_close(grad.double(), reference[:, 1], rtol=100 * eps, atol=1e-300)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_gradient_of_the_nll_is_the_mean_minus_x(dtype):
    # d/d eta [-log p(x|eta)] = E[x] - x: the continuous Bernoulli is an exponential family
    eta = WIDE.to(dtype).requires_grad_(True)
    x = torch.rand(len(eta), generator=torch.Generator().manual_seed(0), dtype=dtype)
    x[:3] = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)
    loss = nll(eta.view(-1, 1, 1, 1), x.view(-1, 1, 1, 1), "continuous-bernoulli")
    (grad,) = torch.autograd.grad(loss.sum(), eta)
    mean = torch.tensor([exact_mean(e)[0] for e in eta.tolist()], dtype=torch.float64)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(grad.double(), mean - x.double(), rtol=0, atol=8 * eps)


def test_float32_is_finite_with_finite_gradients_everywhere():
    eta = torch.tensor([-5000.0, -200.0, -1e-4, 0.0, 1e-4, 200.0, 5000.0], requires_grad=True)
    x = torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0])
    loss = nll(eta.view(-1, 1, 1, 1), x.view(-1, 1, 1, 1), "continuous-bernoulli").sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(eta.grad).all()
    assert torch.isfinite(cb_mean(eta.detach())).all()


def exact_cdf(x: torch.Tensor, eta: float) -> torch.Tensor:
    """F(x) = expm1(eta x) / expm1(eta) in float64, at -|eta| and mirrored for eta > 0."""
    a, y = -abs(eta), (x if eta <= 0 else 1 - x)
    g = y if a == 0 else torch.expm1(a * y) / math.expm1(a)
    return g if eta <= 0 else 1 - g


@pytest.mark.parametrize(
    "eta, n",
    [(e, 2**20) for e in (-5000.0, -30.0, -1.0, -1e-3, -1e-5, 0.0, 1e-5, 1e-3, 30.0, 5000.0)]
    + [(-0.0099, 2**22), (0.0099, 2**22)],
)
def test_samples_follow_the_exact_cdf(eta, n):
    # Kolmogorov-Smirnov against the exact CDF: sqrt(n) * D < 1.95 (level 0.001). At
    # |eta| = 0.0099 the uniform differs from the CDF by up to eta / 8 = 1.2e-3, which
    # 2**22 draws see (sqrt(n) * 1.2e-3 = 2.5); nearer 0 only the test below can.
    x = cb_sample(torch.full((n,), eta, dtype=torch.float64), torch.Generator().manual_seed(0))
    f = exact_cdf(x.sort().values, eta)  # (n,)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = max((i / n - f).max().item(), (f - (i - 1) / n).max().item())
    assert math.sqrt(n) * d < 1.95


def exact_quantile(u: float, eta: float) -> float:
    """F^-1(u) = log(1 + u (e^eta - 1)) / eta, in decimal arithmetic (u at eta = 0)."""
    if eta == 0:
        return u
    with localcontext(EXACT):
        e = Decimal(eta)
        return float((1 + Decimal(u) * (e.exp() - 1)).ln() / e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eta", [-5000.0, -0.3, -1e-3, -1e-5, -1e-9, 0.0, 1e-9, 1e-5, 1e-3, 2.0])
def test_each_sample_is_the_exact_quantile_of_its_uniform(eta, dtype):
    # The same generator state gives the sampler's uniforms u; each draw must be F^-1(u)
    # (F^-1(1 - u) for eta > 0: the sampler mirrors the draw for -eta) to a few rounding
    # errors. Near eta = 0 the distribution is within eta / 8 of the uniform, too close
    # for a sample of any practical size to tell apart, but not draw by draw.
    n = 400
    x = cb_sample(torch.full((n,), eta, dtype=dtype), torch.Generator().manual_seed(3))
    u = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=dtype)
    u = u if eta <= 0 else 1 - u.double()  # 1 - u is exact in float64
    exact = torch.tensor([exact_quantile(v, eta) for v in u.tolist()], dtype=torch.float64)
    assert x.dtype == dtype and ((x >= 0) & (x <= 1)).all()
    torch.testing.assert_close(x.double(), exact, rtol=0, atol=4 * torch.finfo(dtype).eps)


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
