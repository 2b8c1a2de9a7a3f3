"""vae_tutorial: the finished pieces of the VAE Tutorial Book.

Each module holds one concept, in the order the chapters build them: ``data``,
``model``, ``loss``, ``epoch`` (one epoch of training), ``training`` (fitting a run, with
``config``, ``checkpoint``, ``loaders``, ``optim`` and ``devices``), ``cache`` (trained
models) and ``plotting``; then ``evaluation`` (the test -ELBO, the IWAE bound, active
units), ``quadrature`` (exact log p(x) in 2-D), ``cvae`` (the conditional VAE), ``widgets``
and ``explorer`` (latent explorers with and without a kernel), ``blog``, ``objectives``,
``graphed`` (the CUDA-graph step), ``distributed`` and ``bench``.
"""

from .cache import cached_checkpoint, load_or_train
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
from .devices import seed_everything, select_device
from .epoch import train_epoch
from .evaluation import evaluate
from .loss import VAELoss, kl_divergence, reconstruction_nll, vae_loss
from .model import VAE, Decoder, Encoder, reparameterize
from .paths import cache_root, data_root
from .training import fit

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
