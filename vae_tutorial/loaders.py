"""The loaders a :class:`~vae_tutorial.config.TrainConfig` describes: the training images
in an order fixed by ``(seed, epoch)``, and the test images binarized once."""

from __future__ import annotations

import torch

from .config import TrainConfig
from .data import TensorLoader, epoch_seed, fixed_binarized, mnist_tensors, torchvision_loader
from .distributed import SINGLE, Context


def make_loaders(config: TrainConfig, device: torch.device, root=None, context: Context = SINGLE):
    """Training and test loaders for ``config``. The test set is binarized once, with a
    fixed seed, when ``config.binarized``; the training set afresh every batch. Either
    training loader's order in epoch ``e`` depends only on ``(config.seed, e)``; under
    ``torchrun`` each rank's tensor loader keeps its rows of every global batch."""
    if config.loader == "torchvision":
        train = torchvision_loader(
            True,
            config.batch_size,
            True,
            config.binarized,
            root,
            size=config.train_size,
            generator=torch.Generator(),
            dataset=config.dataset,
        )
    else:
        images, labels = mnist_tensors(True, root, device, config.dataset)
        n = config.train_size or len(images)
        train = TensorLoader(
            images[:n],
            labels[:n],
            config.batch_size,
            True,
            config.binarized,
            config.seed,
            context.rank,
            context.world_size,
        )
    return train, test_loader(config, device, root)


def test_loader(config: TrainConfig, device: torch.device, root=None) -> TensorLoader:
    """The 10,000 test images, in order; binarized once with a fixed seed if ``config.binarized``."""
    images, labels = mnist_tensors(False, root, device, config.dataset)
    if config.binarized:
        images = fixed_binarized(images)
    return TensorLoader(images, labels, batch_size=1000, shuffle=False)


def set_epoch(loader, seed: int, epoch: int) -> None:
    """Fix the data order of ``epoch`` for either kind of training loader."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    elif getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(epoch_seed(seed, epoch))
