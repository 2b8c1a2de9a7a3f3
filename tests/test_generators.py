"""Random draws follow the generator the caller gives: the noise is drawn where the generator
lives (a CUDA generator draws on the GPU), then moved to the model's device."""

import pytest
import torch

from vae_tutorial.cvae import ConditionalVAE, digit_grid
from vae_tutorial.likelihood import cb_sample
from vae_tutorial.model import VAE


def models() -> tuple[ConditionalVAE, VAE]:
    torch.manual_seed(0)
    return ConditionalVAE(latent_dim=3).eval(), VAE(latent_dim=3).eval()


LABELS, LOGITS = torch.tensor([3, 7]), torch.linspace(-3, 3, 7)  # on the CPU


def draws(conditional, plain, generator):
    """What each sampler returns for ``generator``: the digit grid, one sample per label,
    two samples of the plain VAE, and continuous-Bernoulli grey levels."""
    return (
        digit_grid(conditional, n_styles=2, generator=generator),
        conditional.sample(LABELS, generator=generator),
        plain.sample(2, generator=generator),
        cb_sample(LOGITS, generator),
    )


def test_noise_is_drawn_on_the_generators_device_not_the_default_one():
    # A CPU generator while new tensors default to another device (here "meta", which
    # holds no values): the noise must still come from the generator on its own device,
    # as a CUDA generator's must come from the GPU when the default device is the CPU.
    pair = models()
    expected = draws(*pair, torch.Generator().manual_seed(5))
    torch.set_default_device("meta")
    try:
        got = draws(*pair, torch.Generator().manual_seed(5))
    finally:
        torch.set_default_device(None)
    for a, b in zip(got, expected, strict=True):
        assert a.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_generator_works_with_a_model_on_either_device():
    for device in ("cuda", "cpu"):
        pair = [model.to(device) for model in models()]
        first = draws(*pair, torch.Generator("cuda").manual_seed(5))
        again = draws(*pair, torch.Generator("cuda").manual_seed(5))
        assert [a.device.type for a in first] == [device, device, device, "cpu"]
        for a, b in zip(first, again, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
