"""MNIST for the book: the blog's ``DataLoader`` path and a faster tensor-resident path.

Pixels are floats in [0, 1], shape ``(B, 1, 28, 28)``. A Bernoulli decoder models binary
pixels, so both paths can *binarize dynamically*: every time an image is drawn, each
pixel is replaced by a fresh sample ``x_ij ~ Bernoulli(intensity_ij)``.

Fashion-MNIST (Xiao et al., 2017: clothes, in MNIST's format and sizes) goes through the
same path: every function that reads data takes ``dataset="mnist"`` or ``"fashion-mnist"``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from .locks import exclusive
from .model import check_pixels
from .paths import DATA_ENV, data_root

DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # how messages name them
MNIST_FILES = (  # the same four names for both data sets
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
EXTRACTED_SIZES = {  # bytes of each extracted IDX file: a shorter one is a broken extraction
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
EXTRACTED_MD5 = {  # of each extracted IDX file: what torchvision reads, with or without archive
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
TEST_BINARIZATION_SEED = 0  # the one fixed binarized test set every chapter evaluates on


class MNISTUnavailableError(RuntimeError):
    """MNIST (or Fashion-MNIST) is not on disk and could not be downloaded."""


def torchvision_class(dataset: str) -> type[datasets.MNIST]:
    """The torchvision class that reads ``dataset`` (``"mnist"`` or ``"fashion-mnist"``)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[dataset]


def raw_folder(root: str | Path, dataset: str = "mnist") -> Path:
    """Where torchvision keeps ``dataset``'s files under ``root``: ``MNIST/raw``,
    ``FashionMNIST/raw``."""
    return Path(root) / torchvision_class(dataset).__name__ / "raw"


def _unavailable(raw: Path, reason: str) -> MNISTUnavailableError:
    files = ", ".join(MNIST_FILES)
    name = raw.parent.name  # MNIST or FashionMNIST
    return MNISTUnavailableError(
        f"{name} is not in {raw} and could not be downloaded ({reason}). "
        f"Copy the four original files ({files}; or the same files uncompressed) into that "
        f"folder, or set {DATA_ENV} to a folder whose {name}/raw/ holds them, then run again."
    )


def download_mnist(root: str | Path | None = None, dataset: str = "mnist") -> Path:
    """Make sure ``dataset`` is under ``root`` (default :func:`data_root`); return ``root``.

    Every file there is checked against its MD5 sum first: an extracted IDX file that
    passes is used as it is (as torchvision does, which then needs no archive); a file
    that fails is set aside as ``*.damaged``. torchvision downloads what is then missing
    and checks each archive's MD5 sum. Its progress messages are swallowed so that
    notebook output does not depend on whether the data was already there.
    """
    root = Path(root) if root is not None else data_root()
    raw = raw_folder(root, dataset)
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MNISTUnavailableError(
            f"cannot create the data folder {raw}: {err.strerror}. "
            f"Set {DATA_ENV} to a folder you can write to."
        ) from None
    # one process at a time checks, downloads and extracts (another would read a half-
    # written file): the second waits, then finds the files whole
    with exclusive(raw / "download"):
        _fetch(root, raw, dataset)
    return root


def _fetch(root: Path, raw: Path, dataset: str) -> None:
    damaged = _set_aside_damaged_files(raw, dataset)
    chatter = io.StringIO()
    try:
        with redirect_stdout(chatter), redirect_stderr(chatter):
            torchvision_class(dataset)(root, train=True, download=True)
    except (OSError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if damaged:
            names = ", ".join(damaged)
            reason = (
                f"{names} failed the MD5 check (truncated or corrupted; kept as *.damaged) "
                f"and a fresh copy could not be downloaded: {reason}"
            )
        raise _unavailable(raw, reason) from None


def _set_aside_damaged_files(raw: Path, dataset: str) -> list[str]:
    """Rename files whose MD5 sum is wrong (a half download or extraction, a damaged copy)
    to ``*.damaged`` so that they are fetched afresh and never read; return their names.
    An archive is checked only where its extracted file is not there and good."""
    damaged = []
    for archive, archive_md5 in torchvision_class(dataset).resources:
        extracted = raw / archive.removesuffix(".gz")
        extracted_md5 = EXTRACTED_MD5[dataset][extracted.name]
        for path, md5 in ((extracted, extracted_md5), (raw / archive, archive_md5)):
            if not path.exists():
                continue
            if check_integrity(str(path), md5):
                break  # torchvision reads this extracted file, or extracts this archive
            path.replace(path.with_name(path.name + ".damaged"))
            damaged.append(path.name)
    return damaged


def _extracted(raw: Path) -> bool:
    """True if every extracted IDX file is there with its size (not cut short)."""
    return all(
        (raw / n).is_file() and (raw / n).stat().st_size == size
        for n, size in EXTRACTED_SIZES.items()
    )


def mnist_dataset(
    train: bool = True, root: str | Path | None = None, transform=None, dataset: str = "mnist"
) -> datasets.MNIST:
    """The torchvision split of ``dataset`` (60,000 train or 10,000 test images), checked,
    and downloaded if absent."""
    root = Path(root) if root is not None else data_root()
    if not _extracted(raw_folder(root, dataset)):  # not yet, or cut short: verify, fetch
        download_mnist(root, dataset)
    return torchvision_class(dataset)(root, train=train, transform=transform, download=False)


def mnist_tensors(
    train: bool = True,
    root: str | Path | None = None,
    device: str | torch.device = "cpu",
    dataset: str = "mnist",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as two tensors: images ``(N, 1, 28, 28)`` float in [0, 1], labels ``(N,)``."""
    ds = mnist_dataset(train, root, dataset=dataset)
    images = ds.data.unsqueeze(1).to(device=device, dtype=torch.float32) / 255  # (N, 1, 28, 28)
    return images, ds.targets.to(device)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s data order: a function of ``(seed, epoch)`` only."""
    return seed * 100_003 + epoch


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli sample per pixel: ``b_ij = 1`` with probability ``x_ij``."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarized(images: torch.Tensor, seed: int = TEST_BINARIZATION_SEED) -> torch.Tensor:
    """A binarization drawn once with a fixed seed (for a test set that never changes)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return binarize(images.cpu(), generator).to(images.device)


class Binarize:
    """A torchvision transform: dynamic binarization of a ``ToTensor`` image."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(x)


def torchvision_loader(
    train: bool = True,
    batch_size: int = 128,
    shuffle: bool = True,
    binarized: bool = False,
    root: str | Path | None = None,
    num_workers: int = 0,
    size: int | None = None,
    generator: torch.Generator | None = None,
    dataset: str = "mnist",
) -> DataLoader:
    """The blog's data path: ``datasets.MNIST`` + ``ToTensor`` in a ``DataLoader``.

    Every image goes through PIL and a Python transform, one at a time. ``size`` keeps
    only the first ``size`` images; ``generator`` drives the shuffle (for a fixed order).
    """
    _check_batch_size(batch_size)
    steps = [transforms.ToTensor()] + ([Binarize()] if binarized else [])
    ds = mnist_dataset(train, root, transforms.Compose(steps), dataset)
    if size is not None:
        ds = torch.utils.data.Subset(ds, range(size))
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator
    )


class TensorLoader:
    """Shuffled batches from tensors that already live on the device.

    A batch is one indexing operation ``images[idx]``: no PIL, no per-image Python.
    The order of epoch ``e`` depends only on ``(seed, e)``, so an interrupted run can
    resume with the same data order. ``binarized=True`` draws fresh pixels each batch.

    With ``world_size > 1`` (distributed training) ``batch_size`` is the *global* batch:
    every rank forms the same global batch, binarizes all of it with the same random
    numbers, and keeps rows ``rank::world_size``, so the ranks together see exactly what
    one process would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = True,
        binarized: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_batch_size(batch_size)
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} must split evenly over {world_size} processes "
                f"(rank {rank}); choose a multiple of {world_size}"
            )
        self.rank, self.world_size = rank, world_size
        check_pixels(images)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"images must be (N, 1, 28, 28) with one label each; got images "
                f"{tuple(images.shape)} and labels {tuple(labels.shape)}"
            )
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.binarized = batch_size, shuffle, binarized
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's shuffle the next iteration uses."""
        self.epoch = epoch

    @property
    def num_images(self) -> int:
        return len(self.images)

    def __len__(self) -> int:  # number of batches, like DataLoader
        return -(-self.num_images // self.batch_size)

    def __iter__(self):
        return self.batches()

    def order(self) -> torch.Tensor:
        """This epoch's order of the images, ``(N,)`` on the CPU: a permutation drawn from
        ``(seed, epoch)`` alone when shuffling, else ``0, 1, ..., N - 1``."""
        if not self.shuffle:
            return torch.arange(self.num_images)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.num_images, generator=generator)

    def batches(self, start_batch: int = 0):
        """This epoch's batches, from batch ``start_batch`` on (to resume mid-epoch)."""
        order = self.order().to(self.images.device)
        for start in range(start_batch * self.batch_size, self.num_images, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]  # (B, 1, 28, 28)
            x = binarize(x) if self.binarized else x
            shard = slice(self.rank, None, self.world_size)  # all rows when world_size is 1
            yield x[shard], self.labels[idx][shard]

    def global_batch_size(self, step: int) -> int:
        """Images in global batch ``step`` of an epoch (the last one may be smaller)."""
        return min(self.batch_size, self.num_images - step * self.batch_size)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
