"""vae_tutorial: the finished pieces of the VAE Tutorial Book.

Each module holds one concept, in the order the chapters build them: ``data``,
``model``, ``loss``, ``training`` (with ``config`` and ``checkpoint``) and ``plotting``;
then ``evaluation`` (the IWAE bound, active units), ``quadrature`` (exact log p(x) in 2-D), ``cvae`` (the conditional VAE),
``widgets`` and ``explorer`` (latent explorers with and without a kernel), ``blog``,
``distributed`` and ``bench``.
"""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .cvae import ConditionalVAE
from .data import (
    MNISTUnavailableError,
    TensorLoader,
    binarize,
    download_mnist,
    fixed_binarized,
    mnist_dataset,
    mnist_tensors,
    torchvision_loader,
)
from .loss import VAELoss, kl_divergence, reconstruction_nll, vae_loss
from .model import VAE, Decoder, Encoder, reparameterize
from .paths import cache_root, data_root
from .training import (
    cached_checkpoint,
    evaluate,
    fit,
    load_or_train,
    seed_everything,
    select_device,
    train_epoch,
)

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Checkpoint",
    "ConditionalVAE",
    "CheckpointError",
    "Decoder",
    "Encoder",
    "MNISTUnavailableError",
    "TensorLoader",
    "TrainConfig",
    "VAELoss",
    "binarize",
    "cache_root",
    "cached_checkpoint",
    "data_root",
    "download_mnist",
    "evaluate",
    "fit",
    "fixed_binarized",
    "kl_divergence",
    "load_checkpoint",
    "load_or_train",
    "mnist_dataset",
    "mnist_tensors",
    "reconstruction_nll",
    "reparameterize",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "torchvision_loader",
    "train_epoch",
    "vae_loss",
]
