"""One training run's settings, validated, hashable into a cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from .model import check_latent_dim

LOADERS = ("tensor", "torchvision")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. Defaults are the blog post's model with the book's data.

    ``binarized``: train on dynamically binarized MNIST and evaluate on one fixed
    binarization of the test set (the standard benchmark); ``False`` uses grey levels.
    ``train_size``: use only the first ``train_size`` training images (quick runs).
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

    def __post_init__(self):
        check_latent_dim(self.latent_dim)
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
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {self.loader!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def same_run(self, other: TrainConfig) -> bool:
        """True if ``other`` continues this run: every setting equal but ``epochs`` (and the
        data path, which does not change the result)."""
        ignore = ("epochs", "loader")
        mine = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return mine == {k: v for k, v in other.to_dict().items() if k not in ignore}

    def key(self) -> str:
        """A short stable hash of the settings that change the trained weights."""
        settings = {k: v for k, v in self.to_dict().items() if k != "loader"}
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
