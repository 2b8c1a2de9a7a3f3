"""One training run's settings, validated, hashable into a cache key."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from .data import DATASETS
from .likelihood import LIKELIHOODS
from .model import check_latent_dim

# A code needs no more numbers than the 28 x 28 = 784 pixels it encodes. The bound also
# stops a typo before the allocator does: the model holds 770 weights per latent coordinate
# (the encoder's two 256 -> D heads, the decoder's D -> 256 layer), so D = 99,999,999
# would need 7.7e10 of them, 308 GB in float32.
MAX_LATENT_DIM = 28 * 28
LOADERS = ("tensor", "torchvision")
LR_SCHEDULES = ("constant", "cosine")
ADDED_LATER = {  # fields left out of key() at their default, so old cache keys still hold
    "lr_schedule": "constant",
    "free_bits": 0.0,
    "kl_warmup": 0,
    "conditional": False,
    "dataset": "mnist",
    "likelihood": "bernoulli",
    "iwae_k": 1,
}
SHOWN_IF_SET = {
    "dataset": "mnist",
    "likelihood": "bernoulli",
    "iwae_k": 1,
}  # left out of repr at their default: printed configs hold


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. Defaults are the blog post's model with the book's data.

    ``binarized``: train on dynamically binarized MNIST and evaluate on one fixed
    binarization of the test set (the standard benchmark); ``False`` uses grey levels.
    ``train_size``: use only the first ``train_size`` training images (quick runs).
    ``lr_schedule``: ``"constant"``, or ``"cosine"``: epoch ``e`` of ``E`` uses
    ``lr * (1 + cos(pi * e / E)) / 2``, from ``lr`` down towards 0.
    ``free_bits``: nats per latent coordinate that cost nothing (see ``loss.vae_loss``).
    ``kl_warmup``: epochs over which the KL weight grows linearly from 0 to ``beta``
    (KL annealing, Bowman et al., 2016), step by step.
    ``conditional``: a conditional VAE, ``q(z|x, y)`` and ``p(x|z, y)`` (``cvae`` module).
    ``dataset``: ``"mnist"`` or ``"fashion-mnist"`` (the same sizes; ``data`` module).
    ``likelihood``: the decoder's ``p(x|z)``, ``"bernoulli"`` or ``"continuous-bernoulli"``
    (a density on grey levels; ``likelihood`` module).
    ``iwae_k``: importance samples per image of the training objective: 1 is the ELBO,
    ``k > 1`` the IWAE bound (Burda et al., 2016; ``objectives`` module).
    """

    epochs: int = 10
    latent_dim: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    binarized: bool = True
    loader: str = "tensor"
    train_size: int | None = None
    lr_schedule: str = "constant"
    free_bits: float = 0.0
    kl_warmup: int = 0
    conditional: bool = False
    dataset: str = "mnist"
    likelihood: str = "bernoulli"
    iwae_k: int = 1

    def __post_init__(self):
        check_latent_dim(self.latent_dim)
        if self.latent_dim > MAX_LATENT_DIM:
            raise ValueError(
                f"latent_dim must be in 1..{MAX_LATENT_DIM}, the number of pixels it encodes; "
                f"got {self.latent_dim}"
            )
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.train_size is not None and (
            isinstance(self.train_size, bool)
            or not isinstance(self.train_size, int)
            or not 0 < self.train_size <= 60_000
        ):
            raise ValueError(f"train_size must be in 1..60000 or None, got {self.train_size!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.beta, (int, float)) and 0 <= self.beta < float("inf")):
            raise ValueError(f"beta must be a non-negative finite number, got {self.beta!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not (isinstance(self.free_bits, (int, float)) and 0 <= self.free_bits < float("inf")):
            raise ValueError(
                f"free_bits must be a non-negative finite number of nats, got {self.free_bits!r}"
            )
        if (
            isinstance(self.kl_warmup, bool)
            or not isinstance(self.kl_warmup, int)
            or self.kl_warmup < 0
        ):
            raise ValueError(f"kl_warmup must be a number of epochs >= 0, got {self.kl_warmup!r}")
        if not isinstance(self.conditional, bool):
            raise ValueError(f"conditional must be True or False, got {self.conditional!r}")
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {self.loader!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {self.dataset!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if isinstance(self.iwae_k, bool) or not isinstance(self.iwae_k, int) or self.iwae_k < 1:
            raise ValueError(
                f"iwae_k must be an integer >= 1 (1 trains the ELBO), got {self.iwae_k!r}"
            )
        if self.iwae_k > 1 and (self.beta != 1 or self.free_bits or self.kl_warmup):
            raise ValueError(
                "iwae_k > 1 trains the IWAE bound, which has no KL term to weigh: "
                "leave beta at 1, free_bits at 0 and kl_warmup at 0"
            )

    def __repr__(self) -> str:
        """The dataclass's repr, less the fields of ``SHOWN_IF_SET`` at their default."""
        shown = (
            f"{k}={v!r}"
            for k, v in self.to_dict().items()
            if not (k in SHOWN_IF_SET and v == SHOWN_IF_SET[k])
        )
        return f"TrainConfig({', '.join(shown)})"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counting from 0)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.lr

    def kl_weight(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """The KL weight at ``step`` of ``epoch``: ``beta``, or during the warm-up
        ``beta * (steps done + 1) / (kl_warmup * steps_per_epoch)``."""
        if self.kl_warmup == 0:
            return self.beta
        done = epoch * steps_per_epoch + step + 1
        return self.beta * min(1.0, done / (self.kl_warmup * steps_per_epoch))

    def same_run(self, other: TrainConfig) -> bool:
        """True if ``other`` continues this run: every setting equal but ``epochs`` (and the
        data path, which does not change the result). A cosine schedule depends on the
        number of epochs, so there ``epochs`` must match too."""
        ignore = ("epochs", "loader") if self.lr_schedule == "constant" else ("loader",)
        mine = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return mine == {k: v for k, v in other.to_dict().items() if k not in ignore}

    def key(self) -> str:
        """A short stable hash of the settings that change the trained weights."""
        settings = {
            k: v
            for k, v in self.to_dict().items()
            if k != "loader" and not (k in ADDED_LATER and v == ADDED_LATER[k])
        }
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


PRESETS = {
    # the most a 2-core CPU learns in about 3 minutes: more epochs than the book's 10,
    # a higher learning rate, cosine decay to 0 (22 epochs like this: 97.5 nats -ELBO)
    "fast": {"epochs": 19, "lr": 2e-3, "lr_schedule": "cosine"},
    # for a GPU: long enough to compare with published binarized-MNIST numbers
    "long": {"epochs": 500, "lr": 1e-3, "lr_schedule": "cosine"},
}
