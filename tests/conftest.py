"""Shared fixtures. Tests read MNIST from the project's data root (CI copies it there)."""

import pytest
import torch

from vae_tutorial import download_mnist


@pytest.fixture(scope="session")
def mnist_root():
    """The data root, with MNIST verified (MD5) and extracted."""
    return download_mnist()


@pytest.fixture(autouse=True)
def _fixed_threads():
    torch.manual_seed(0)
    yield
