"""The training objectives: the ELBO is vae_loss, the IWAE bound is the evaluation's bound
with gradients, tighter than the ELBO, and both train through fit and the CLI."""

import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.cli import main
from vae_tutorial.evaluation import log_weights
from vae_tutorial.objectives import ELBO, IWAE, make_objective
from vae_tutorial.training import use_cuda_graph


def batch(n=16):
    torch.manual_seed(0)
    return vt.VAE(latent_dim=4), torch.bernoulli(torch.rand(n, 1, 28, 28) * 0.3)


def test_the_elbo_objective_is_vae_loss():
    model, x = batch()
    torch.manual_seed(1)
    loss = ELBO(free_bits=0.2)(model, x, None, None, 0.5)
    torch.manual_seed(1)
    logits, mu, logvar = model(x)
    assert torch.equal(loss, vt.vae_loss(logits, x, mu, logvar, 0.5, free_bits=0.2).total)


@pytest.mark.parametrize("k", [1, 3])
def test_the_iwae_objective_is_the_evaluations_bound_with_gradients(k):
    model, x = batch()
    torch.manual_seed(2)
    loss = IWAE(k)(model, x)
    torch.manual_seed(2)  # the same noise: (k, B, D) standard normals
    bound = torch.logsumexp(log_weights(model, x, k), dim=1) - math.log(k)  # (B,)
    # float32 sums of 784 terms per image, in another order: rounding only
    assert loss.item() == pytest.approx(-bound.sum().item(), rel=1e-5)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_chunks_change_memory_not_the_loss_or_its_gradients():
    # Chunks of 3 samples (7 = 3 + 3 + 1, decoder activations recomputed in backward)
    # against all 7 at once, with the same noise: the same sums, in pieces.
    model, x = batch(8)
    results = []
    for chunk in (None, 3):
        model.zero_grad()
        torch.manual_seed(4)
        loss = IWAE(7, chunk=chunk)(model, x)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (whole, grads_whole), (chunked, grads_chunked) = results
    torch.testing.assert_close(chunked, whole)
    # A weight's gradient sums over all 7 * 8 codes; in chunks the float32 sum is taken in
    # another order (relative differences of a few 1e-6 measured), so 1e-4 is rounding only
    for a, b in zip(grads_chunked, grads_whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_a_small_chunk_bounds_the_decoder_batch():
    model, x = batch(4)
    sizes = []
    hook = model.decoder.register_forward_hook(lambda m, i, o: sizes.append(len(o)))
    try:
        IWAE(64, chunk=8)(model, x).backward()
    finally:
        hook.remove()
    # forward 8 chunks, and each recomputed once in the backward pass: never 64 * 4 codes
    assert sizes == [8 * 4] * 16


def test_more_samples_give_a_tighter_bound():
    model, x = batch(64)
    with torch.no_grad():  # a q far wider than the prior: log w varies by many nats
        model.encoder.fc_logvar.bias.fill_(2.0)
    torch.manual_seed(3)
    l1 = -IWAE(1)(model, x).item() / 64
    l10 = -IWAE(10)(model, x).item() / 64
    # L_10 - L_1 is 11 to 15 nats per image here (4 seeds), against Monte Carlo noise of
    # the mean over 64 images of about a nat
    assert l10 > l1 + 5


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="integer >= 1"):
        IWAE(0)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        IWAE(5, chunk=0)
    with pytest.raises(ValueError, match="iwae_k must be an integer >= 1"):
        vt.TrainConfig(iwae_k=0)
    with pytest.raises(ValueError, match="no KL term to weigh"):
        vt.TrainConfig(iwae_k=5, beta=4.0)
    with pytest.raises(ValueError, match="the IWAE bound has none"):
        make_objective(free_bits=0.5, iwae_k=5)
    assert make_objective(0.5, 1) == ELBO(0.5) and make_objective(0.0, 5) == IWAE(5)
    assert "iwae_k" not in repr(vt.TrainConfig()) and vt.TrainConfig(epochs=10).key() == (
        "109644431f71"
    )


@pytest.fixture
def iwae_steps(monkeypatch):
    """Every IWAE loss a training step computes, as (k, images, loss): an ELBO run adds none."""
    steps, real = [], IWAE.__call__

    def spy(self, model, x, *args, **kwargs):
        loss = real(self, model, x, *args, **kwargs)
        steps.append((self.k, len(x), loss.item()))
        return loss

    monkeypatch.setattr(IWAE, "__call__", spy)
    return steps


def assert_trained_with_iwae(steps, history, k):
    # 512 images in batches of 128: four steps, each the IWAE loss with this k, and the
    # epoch's reported train loss is their mean per image (float32 sums: rounding only)
    assert [(s[0], s[1]) for s in steps] == [(k, 128)] * 4
    assert history["train_loss"][0] == pytest.approx(sum(s[2] for s in steps) / 512, rel=1e-6)


def test_iwae_training_is_eager_and_runs_through_fit(mnist_root, iwae_steps):
    config = vt.TrainConfig(epochs=1, train_size=512, iwae_k=3, latent_dim=4)
    assert not use_cuda_graph(None, torch.device("cuda"), config)
    model, history = vt.fit(config, "cpu", progress=False, verbose=False)
    assert_trained_with_iwae(iwae_steps, history, 3)


def test_the_cli_trains_with_iwae_k(tmp_path, mnist_root, iwae_steps):
    out = tmp_path / "iwae"
    args = ["train", "--iwae-k", "2", "--epochs", "1", "--train-size", "512", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    state = vt.load_checkpoint(out / "checkpoint.pt", "cpu")
    assert state.config.iwae_k == 2
    assert_trained_with_iwae(iwae_steps, state.history, 2)


def test_iwae_refuses_a_kl_weight():
    model, x = batch(4)
    with pytest.raises(ValueError, match="the IWAE bound has no KL term for beta to weigh"):
        IWAE(2)(model, x, beta=0.5)
    assert torch.isfinite(IWAE(2)(model, x, beta=1.0))


def test_a_conditional_iwae_loss_needs_one_label_per_image():
    torch.manual_seed(0)
    model, x = vt.ConditionalVAE(latent_dim=3), torch.zeros(4, 1, 28, 28)
    with pytest.raises(ValueError, match="4 images but 3 labels; give one label per image"):
        IWAE(2)(model, x, torch.tensor([1, 2, 3]))
    assert torch.isfinite(IWAE(2)(model, x, torch.tensor([1, 2, 3, 4])))
