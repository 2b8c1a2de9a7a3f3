import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from vae_tutorial import (
    MNISTUnavailableError,
    TensorLoader,
    binarize,
    download_mnist,
    fixed_binarized,
    mnist_dataset,
    mnist_tensors,
    torchvision_loader,
)
from vae_tutorial.data import DATASETS, MNIST_FILES


def test_splits_have_the_documented_shapes_and_range(mnist_root):
    images, labels = mnist_tensors(train=False)
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and set(labels.unique().tolist()) == set(range(10))
    assert images.min() == 0 and images.max() == 1
    assert len(mnist_dataset(train=True)) == 60_000


def test_the_two_loaders_give_the_same_images_and_labels(mnist_root):
    blog = torchvision_loader(train=False, batch_size=500, shuffle=False)
    images, labels = mnist_tensors(train=False)
    ours = TensorLoader(images, labels, batch_size=500, shuffle=False)
    assert len(blog) == len(ours) == 20
    for (xb, yb), (xo, yo) in zip(blog, ours, strict=True):
        assert torch.equal(xb, xo) and torch.equal(yb, yo)


def test_tensor_loader_shuffles_every_image_once_per_epoch_and_reproducibly():
    images = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 28, 28) / 10
    labels = torch.arange(10)
    loader = TensorLoader(images, labels, batch_size=4, seed=3)
    epoch0 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(10)) and epoch0.tolist() != list(range(10))
    assert torch.equal(epoch0, torch.cat([y for _, y in loader]))
    loader.set_epoch(1)
    assert not torch.equal(epoch0, torch.cat([y for _, y in loader]))
    assert [len(y) for _, y in loader] == [4, 4, 2]


def test_dynamic_binarization_is_fresh_bernoulli_noise():
    x = torch.full((2000, 1, 28, 28), 0.3)
    b1, b2 = binarize(x), binarize(x)
    assert set(b1.unique().tolist()) == {0.0, 1.0}
    assert abs(b1.mean().item() - 0.3) < 0.01
    assert not torch.equal(b1, b2)
    assert torch.equal(fixed_binarized(x), fixed_binarized(x))


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_missing_data_without_network_gives_one_clear_message(
    tmp_path, monkeypatch, dataset, folder
):
    # a closed local port stands in for "no network" whether or not this machine is online
    monkeypatch.setattr(DATASETS[dataset], "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(MNISTUnavailableError) as info:
        mnist_dataset(train=False, root=tmp_path, dataset=dataset)
    message = str(info.value)
    assert message.startswith(f"{folder} is not in {tmp_path / folder / 'raw'}")
    assert all(name in message for name in MNIST_FILES)
    assert "VAE_TUTORIAL_DATA" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_local_files_are_used_without_network(tmp_path, monkeypatch, mnist_root):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    shutil.copytree(
        mnist_root / "MNIST" / "raw",
        tmp_path / "MNIST" / "raw",
        ignore=shutil.ignore_patterns("*-ubyte"),
    )
    assert len(mnist_dataset(train=False, root=tmp_path)) == 10_000


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_sizes_raise(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(4, 1, 28, 28), torch.zeros(4), batch_size=batch_size)


@pytest.fixture
def offline_copy(tmp_path, monkeypatch, mnist_root):
    """A private copy of the four archives, with downloads pointed at a closed local port."""
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    shutil.copytree(
        mnist_root / "MNIST" / "raw",
        tmp_path / "MNIST" / "raw",
        ignore=shutil.ignore_patterns("*-ubyte", "*.damaged"),
    )
    return tmp_path


def test_a_truncated_archive_is_caught_by_its_checksum_and_named(offline_copy):
    archive = offline_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:5000])  # an interrupted download
    with pytest.raises(MNISTUnavailableError) as info:
        mnist_dataset(train=False, root=offline_copy)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz failed the MD5 check" in message
    assert "could not be downloaded" in message and "\n" not in message
    assert not archive.exists(), "the damaged file is never extracted or trusted"
    assert archive.with_name(archive.name + ".damaged").exists(), "and is not thrown away"


def test_a_half_extracted_file_is_extracted_again(offline_copy):
    assert len(mnist_dataset(train=False, root=offline_copy)) == 10_000
    extracted = offline_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:1000])  # extraction cut short
    images = mnist_dataset(train=False, root=offline_copy).data
    assert images.shape == (10_000, 28, 28)
    assert extracted.stat().st_size == 7_840_016


def test_a_data_root_that_cannot_be_created_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        MNISTUnavailableError, match="cannot create the data folder.*VAE_TUTORIAL_DATA"
    ):
        mnist_dataset(train=False, root=blocker / "data")


@pytest.mark.parametrize(
    "error, expected",
    [
        (OSError(28, "No space left on device"), "No space left on device"),
        (PermissionError(13, "Permission denied"), "Permission denied"),
    ],
)
def test_a_full_disk_or_read_only_folder_during_download_gives_one_clear_message(
    tmp_path, monkeypatch, error, expected
):
    def fail(self):
        raise error

    monkeypatch.setattr(datasets.MNIST, "download", fail)
    with pytest.raises(MNISTUnavailableError) as info:
        mnist_dataset(train=False, root=tmp_path)
    assert expected in str(info.value) and str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 2.0])
def test_loaders_and_inference_refuse_pixels_that_are_not_probabilities(bad):
    from vae_tutorial import VAE
    from vae_tutorial.evaluation import iwae_bound

    images = torch.rand(4, 1, 28, 28)
    images[1, 0, 5, 5] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TensorLoader(images, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAE().reconstruct(images)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        iwae_bound(VAE(), images, 2)


def test_fashion_mnist_comes_through_the_same_path(fashion_root):
    images, labels = mnist_tensors(train=False, dataset="fashion-mnist")
    assert images.shape == (10_000, 1, 28, 28) and images.min() == 0 and images.max() == 1
    assert set(labels.unique().tolist()) == set(range(10))
    assert not torch.equal(images, mnist_tensors(train=False)[0])
    assert len(mnist_dataset(train=True, dataset="fashion-mnist")) == 60_000
    blog = torchvision_loader(False, batch_size=500, shuffle=False, dataset="fashion-mnist")
    xb, yb = next(iter(blog))
    assert torch.equal(xb, images[:500]) and torch.equal(yb, labels[:500])


def test_an_unknown_dataset_name_is_one_clear_error():
    from vae_tutorial import TrainConfig

    with pytest.raises(
        ValueError, match="unknown dataset 'cifar10'; choose one of: mnist, fashion"
    ):
        mnist_dataset(dataset="cifar10")
    with pytest.raises(ValueError, match="dataset must be one of"):
        TrainConfig(dataset="cifar10")


@pytest.fixture
def fashion_offline(tmp_path, monkeypatch, fashion_root):
    """A private copy of Fashion-MNIST's four uncompressed files, as the shared data seeds
    them (no archive), with downloads pointed at a closed local port."""
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(
        fashion_root / "FashionMNIST" / "raw", raw, ignore=shutil.ignore_patterns("*.*")
    )
    assert sorted(p.name for p in raw.iterdir()) == sorted(n[:-3] for n in MNIST_FILES)
    return tmp_path


def test_uncompressed_files_pass_the_check_without_archives(fashion_offline):
    download_mnist(fashion_offline, "fashion-mnist")  # verifies each file's MD5 sum
    assert len(mnist_dataset(train=False, root=fashion_offline, dataset="fashion-mnist")) == 10_000


def test_good_uncompressed_files_are_used_beside_recompressed_archives(
    fashion_offline, shared_fashion
):
    # Debian's recompressed archives fail torchvision's MD5 sums: the extracted files rule
    raw = fashion_offline / "FashionMNIST" / "raw"
    for archive in shared_fashion.glob("*.gz"):
        shutil.copy(archive, raw)
    download_mnist(fashion_offline, "fashion-mnist")
    assert not list(raw.glob("*.damaged"))


def test_a_recompressed_archive_alone_is_caught_by_its_checksum_and_named(
    fashion_offline, shared_fashion
):
    raw = fashion_offline / "FashionMNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    shutil.copy(shared_fashion / "t10k-labels-idx1-ubyte.gz", raw)
    with pytest.raises(MNISTUnavailableError) as info:
        mnist_dataset(train=False, root=fashion_offline, dataset="fashion-mnist")
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz failed the MD5 check" in message and "\n" not in message
    assert (raw / "t10k-labels-idx1-ubyte.gz.damaged").exists()


@pytest.mark.parametrize("keep", [1000, 7_840_016])  # cut short; or whole size, bytes changed
def test_a_damaged_uncompressed_file_is_named_and_never_read(fashion_offline, keep):
    extracted = fashion_offline / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = bytearray(extracted.read_bytes()[:keep])
    data[-1] ^= 0xFF
    extracted.write_bytes(bytes(data))
    with pytest.raises(MNISTUnavailableError) as info:
        download_mnist(fashion_offline, "fashion-mnist")
    message = str(info.value)
    assert message.startswith("FashionMNIST is not in") and "\n" not in message
    assert "t10k-images-idx3-ubyte failed the MD5 check" in message
    assert not extracted.exists() and extracted.with_name(extracted.name + ".damaged").exists()


def test_processes_that_extract_at_once_take_turns(tmp_path):
    # CI's two test processes both extracted MNIST from its archives at the same moment
    # and one read a half-written file ("invalid literal for int() with base 16: b''").
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST"
    if not shared.is_dir():
        pytest.skip("no local copy of the MNIST archives")
    shutil.copytree(shared, tmp_path / "MNIST")
    script = (
        "import sys; from vae_tutorial import download_mnist, mnist_tensors;"
        "download_mnist(sys.argv[1]); print(tuple(mnist_tensors(root=sys.argv[1])[0].shape))"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    outs = [run.communicate(timeout=300)[0].decode().strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0]
    assert outs == ["(60000, 1, 28, 28)"] * 3
