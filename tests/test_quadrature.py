import math

import pytest
import torch

from vae_tutorial import VAE
from vae_tutorial.evaluation import iwae_bound, log_weights
from vae_tutorial.likelihood import nll
from vae_tutorial.quadrature import cell_centres, log_px_quadrature


def _model(z_weight: float) -> VAE:
    """A 2-D VAE whose q(z|x) is the prior and whose decoder sees z through ``z_weight``."""
    torch.manual_seed(0)
    model = VAE(latent_dim=2).eval()
    with torch.no_grad():
        for head in (model.encoder.fc_mu, model.encoder.fc_logvar):
            head.weight.zero_()
            head.bias.zero_()
        model.decoder.fc1.weight.mul_(z_weight)
    return model


def _digit() -> torch.Tensor:
    return torch.bernoulli(
        torch.full((1, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1)
    )


def test_cell_centres_tile_the_box():
    z = cell_centres(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0]), 4)
    assert z.shape == (4, 4, 2)
    assert torch.allclose(z[:, 0, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(z[0, :, 1], torch.tensor([0.5, 1.5, 2.5, 3.5]))


def test_a_decoder_that_ignores_z_gives_log_p_x_given_z():
    # p(x|z) is the same for every z, so p(x) = p(x|z) times the prior's mass in the box
    # [-5, 5]^2, 1 - 1.1e-6: log p(x) = log p(x|z) to within 2e-6 nats, plus float error.
    model, x = _model(0.0), _digit()
    quad = log_px_quadrature(model, x)
    with torch.no_grad():
        exact = -nll(model.decoder(torch.zeros(1, 2)), x).item()
    assert abs(quad.log_px - exact) < 1e-3 and quad.error < 1e-3
    # the posterior is then the prior: KL(N(0, I) || p(z|x)) = 0, KL(N((1, 0), I) || .) = 1/2
    zero = torch.zeros(2)
    assert abs(quad.kl(zero, zero).item()) < 1e-3
    assert abs(quad.kl(torch.tensor([1.0, 0.0]), zero).item() - 0.5) < 1e-3
    assert abs(quad.q_mass(zero, zero) - 1) < 1e-4


def test_the_iwae_bound_converges_to_the_quadrature():
    # A decoder that depends on z: the posterior differs from q = the prior, so
    # L_1 < log p(x), and L_K rises towards it. L_K = log(mean of K weights) is off by
    # its noise and its bias, both read from the weights themselves (the delta method):
    # standard error sqrt(v / K), bias -v / (2K), with v the variance of w / mean(w).
    model, x = _model(3.0), _digit()
    quad = log_px_quadrature(model, x)
    torch.manual_seed(0)
    elbo = iwae_bound(model, x.expand(2000, 1, 28, 28), 1)  # (2000,): 2,000 L_1 draws
    assert elbo.mean() < quad.log_px - 10 * elbo.std() / math.sqrt(2000)
    k = 20_000
    log_w = log_weights(model, x, k)[0].double()  # (K,)
    big = (torch.logsumexp(log_w, 0) - math.log(k)).item()
    v = (log_w - log_w.max()).exp().div((log_w - log_w.max()).exp().mean()).var().item()
    assert abs(big + v / (2 * k) - quad.log_px) < 4 * math.sqrt(v / k) + quad.error
    # ELBO(q) = log p(x) - KL(q || p(z|x)), computed on the grid, agrees with the mean of
    # the sampled ELBOs to within 4 standard errors
    on_grid = quad.log_px - quad.kl(torch.zeros(2), torch.zeros(2)).item()
    assert abs(on_grid - elbo.mean().item()) < 4 * elbo.std().item() / math.sqrt(2000)


def test_the_error_estimate_covers_a_finer_grid():
    model, x = _model(3.0), _digit()
    coarse, fine = log_px_quadrature(model, x), log_px_quadrature(model, x, n=128, coarse=80)
    assert abs(coarse.log_px - fine.log_px) <= coarse.error + fine.error


@pytest.mark.parametrize(
    "model, x, n, message",
    [
        (VAE(latent_dim=20), torch.zeros(1, 1, 28, 28), 48, "needs a 2-D latent space"),
        (VAE(latent_dim=2), torch.zeros(2, 1, 28, 28), 48, "one image at a time"),
        (VAE(latent_dim=2), torch.zeros(1, 1, 28, 28), 47, "even number of cells"),
    ],
)
def test_bad_input_is_refused_with_a_reason(model, x, n, message):
    with pytest.raises(ValueError, match=message):
        log_px_quadrature(model, x, n=n)


def test_the_prior_box_holds_all_but_a_millionth():
    # A decoder that says x = 0 with certainty (logits -30: log p(x|z) = -7e-11 nats) for
    # every z: the quadrature then integrates the prior alone, over the box [-5, 5]^2,
    # and must find its mass, (1 - erfc(5 / sqrt 2))^2 = 1 - 1.1e-6 (the module's
    # docstring), to within its own error estimate (1.6e-7 measured). With the box at
    # [-6, 6]^2 the result would be -3e-8; at [-4, 4]^2, -1.2e-4.
    model = _model(0.0)
    with torch.no_grad():
        model.decoder.conv2.weight.zero_()
        model.decoder.conv2.bias.fill_(-30.0)
    quad = log_px_quadrature(model, torch.zeros(1, 1, 28, 28))
    box_mass = (1 - math.erfc(5 / math.sqrt(2))) ** 2
    assert quad.error < 3e-7
    assert abs(quad.log_px - math.log(box_mass)) <= quad.error
    assert f"{-quad.log_px:.1e}" == "1.1e-06"


@pytest.mark.parametrize("training", [True, False])
def test_the_model_is_left_in_the_mode_it_was_in(training):
    model = _model(3.0).train(training)
    log_px_quadrature(model, _digit(), n=8, coarse=8)
    assert model.training is training


def test_full_float32_turns_tf32_off_and_restores_it():
    from vae_tutorial.quadrature import full_float32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_float32():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
