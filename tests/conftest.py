"""Shared fixtures. Tests read MNIST from the project's data root (CI copies it there)."""

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

from vae_tutorial import data_root, download_mnist
from vae_tutorial.data import raw_folder

# Fashion-MNIST for machines that reach no dataset host (../shared/data/README.md): its
# archives there are recompressed (other MD5 sums), so they are uncompressed into the root
SHARED_FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "FashionMNIST"


@pytest.fixture(scope="session")
def mnist_root():
    """The data root, with MNIST verified (MD5) and extracted."""
    return download_mnist()


@pytest.fixture(scope="session")
def fashion_root():
    """The data root, with Fashion-MNIST verified (MD5) and extracted: seeded from
    ``../shared/data/FashionMNIST/`` where that exists, else downloaded by torchvision."""
    raw = raw_folder(data_root(), "fashion-mnist")
    for archive in sorted(SHARED_FASHION.glob("*.gz")):
        target = raw / archive.stem
        if not target.exists():
            raw.mkdir(parents=True, exist_ok=True)
            part = raw / f"{archive.stem}.{os.getpid()}.part"  # whole or absent, under xdist
            with gzip.open(archive) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(target)
    return download_mnist(dataset="fashion-mnist")


@pytest.fixture
def shared_fashion():
    """``../shared/data/FashionMNIST/``: Debian's recompressed archives (skips where absent)."""
    if not SHARED_FASHION.is_dir():
        pytest.skip(f"no {SHARED_FASHION}")
    return SHARED_FASHION


@pytest.fixture(autouse=True)
def _fixed_threads():
    torch.manual_seed(0)
    yield
