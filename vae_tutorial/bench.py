"""Benchmark: the blog's training path against the package's, in one process.

    python -m vae_tutorial.bench [--device cpu|cuda|all] [--rounds 5] [--steps 100]

Both paths train the same model (the blog's architecture), with the same loss (the
summed negative ELBO), the same optimizer (Adam, lr 1e-3) and the same batch size (128):

- baseline: the blog post as written: a ``DataLoader`` over ``ToTensor`` images, a
  sigmoid decoder with ``BCELoss(reduction='sum')``, ``loss.item()`` every step;
- ours: :func:`vae_tutorial.training.train_epoch`'s step on a
  :class:`~vae_tutorial.data.TensorLoader` that keeps MNIST on the device and binarizes
  each batch there.

Timed rounds of ``--steps`` steps alternate between the two, so that both see the same
machine state; the median images per second of each and their ratio are printed. Then,
unless ``--no-target``, each path trains epoch by epoch until its test -ELBO (binarized
test set, the same evaluation for both) is at most ``--target`` nats, and the wall time
to get there is printed. This is a measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from .blog import BlogVAE, blog_loss, blog_train_loader
from .config import TrainConfig
from .data import TensorLoader, mnist_tensors
from .model import VAE
from .training import evaluate, make_optimizer, select_device, test_loader, train_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless(loader):
    while True:
        yield from loader


class Baseline:
    """The blog's loop, one step at a time, from a DataLoader over ToTensor images."""

    name = "baseline (blog)"

    def __init__(self, device: torch.device):
        self.device = device
        torch.manual_seed(0)
        self.model = BlogVAE().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batches = _endless(blog_train_loader())

    def run(self, steps: int) -> int:
        images = 0
        for _ in range(steps):
            x, _ = next(self.batches)
            x = x.to(self.device)
            self.optimizer.zero_grad()
            x_recon, mu, logvar = self.model(x)
            loss = blog_loss(x_recon, x, mu, logvar)
            loss.backward()
            loss.item()  # the blog adds it to a Python float every step
            self.optimizer.step()
            images += len(x)
        return images

    def epoch(self, index: int) -> None:
        self.run(469)  # 469 batches of 128: one pass, reshuffled by the DataLoader

    def as_vae(self) -> VAE:
        model = VAE().to(self.device)
        model.load_state_dict(self.model.state_dict())
        return model


class Ours:
    """The package's training path: train_epoch on a device-resident, binarized TensorLoader."""

    name = "ours (package)"

    def __init__(self, device: torch.device):
        self.device = device
        torch.manual_seed(0)
        self.model = VAE().to(device)
        self.optimizer = make_optimizer(self.model, lr=1e-3)
        images, labels = mnist_tensors(True, device=device)
        self.images, self.labels = images, labels

    def run(self, steps: int) -> int:
        n = steps * 128
        start = torch.randint(0, len(self.images) - n + 1, ()).item() if n < len(self.images) else 0
        loader = TensorLoader(
            self.images[start : start + n], self.labels[start : start + n], 128, binarized=True
        )
        train_epoch(self.model, loader, self.optimizer)  # reads the loss once, at the end
        return min(n, len(self.images))

    def epoch(self, index: int) -> None:
        loader = TensorLoader(self.images, self.labels, 128, binarized=True)
        loader.set_epoch(index)
        train_epoch(self.model, loader, self.optimizer)

    def as_vae(self) -> VAE:
        return self.model


def throughput(device: torch.device, rounds: int, steps: int) -> dict[str, float]:
    """Median images per second of each path over alternating timed rounds."""
    paths = [Baseline(device), Ours(device)]
    for path in paths:  # warm-up: allocator, kernels, DataLoader start-up
        path.run(5)
    rates = {path.name: [] for path in paths}
    for _ in range(rounds):
        for path in paths:
            _sync(device)
            start = time.perf_counter()
            images = path.run(steps)
            _sync(device)
            rates[path.name].append(images / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def time_to_target(device: torch.device, target: float, max_epochs: int) -> dict[str, tuple]:
    """Wall time and epochs until each path's test -ELBO is at most ``target`` nats."""
    test = test_loader(TrainConfig(), device)
    results = {}
    for make in (Baseline, Ours):
        path = make(device)
        elapsed, value, epochs = 0.0, float("inf"), 0
        while value > target and epochs < max_epochs:
            _sync(device)
            start = time.perf_counter()
            path.epoch(epochs)
            _sync(device)
            elapsed += time.perf_counter() - start
            epochs += 1
            value = evaluate(path.as_vae(), test)["neg_elbo"]
        results[path.name] = (elapsed, epochs, value)
    return results


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vae_tutorial.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--device", default="all", help="cpu, cuda, or all (cpu, plus cuda if present)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per path")
    parser.add_argument("--steps", type=int, default=100, help="training steps per round")
    parser.add_argument("--target", type=float, default=110.0, help="test -ELBO to reach (nats)")
    parser.add_argument(
        "--max-epochs", type=int, default=10, help="give up on the target after this"
    )
    parser.add_argument("--no-target", action="store_true", help="skip the time-to-target runs")
    args = parser.parse_args(argv)
    if args.rounds <= 0 or args.steps <= 0:
        parser.error("--rounds and --steps must be positive")
    if args.device == "all":
        devices = [torch.device("cpu")] + (
            [torch.device("cuda")] if torch.cuda.is_available() else []
        )
    else:
        devices = [select_device(args.device)]
    print(f"torch {torch.__version__}; batch size 128; {args.rounds} rounds of {args.steps} steps")
    for device in devices:
        print(f"\n== {device.type}: {describe(device)}")
        rates = throughput(device, args.rounds, args.steps)
        base, ours = rates[Baseline.name], rates[Ours.name]
        print(f"{Baseline.name:<18}{base:>10,.0f} images/s (median)")
        print(f"{Ours.name:<18}{ours:>10,.0f} images/s (median)")
        print(f"{'ratio':<18}{ours / base:>10.2f} x")
        if not args.no_target:
            for name, (seconds, epochs, value) in time_to_target(
                device, args.target, args.max_epochs
            ).items():
                status = "reached" if value <= args.target else "NOT reached"
                print(
                    f"{name:<18} test -ELBO <= {args.target:g} {status}: {seconds:6.1f} s of training, "
                    f"{epochs} epoch(s), {value:.2f} nats"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
