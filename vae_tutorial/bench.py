"""Benchmark: the blog's training path against the package's, in one process.

    python -m vae_tutorial.bench [--device cpu|cuda|all] [--rounds 5] [--steps 100]
                                 [--compile] [--target 100] [--no-target]

All paths train the same model (the blog's architecture), with the same loss (the
summed negative ELBO), the same optimizer (Adam, lr 1e-3) and the same batch size (128):

- baseline: the blog post as written: a ``DataLoader`` over ``ToTensor`` images, a
  sigmoid decoder with ``BCELoss(reduction='sum')``, ``loss.item()`` every step;
- ours: :func:`vae_tutorial.training.train_epoch`'s step on a
  :class:`~vae_tutorial.data.TensorLoader` that keeps MNIST on the device and binarizes
  each batch there;
- on CUDA, ours (CUDA graph): the same step as one CUDA-graph replay
  (:mod:`vae_tutorial.graphed`), what ``fit`` trains with on a GPU;
- with ``--compile``, ours + ``torch.compile(mode="reduce-overhead")``: the model
  compiled (CUDA graphs of its own on a GPU), the rest as ours.

Timed rounds of ``--steps`` steps alternate between the paths, so that all see the same
machine state; the median images per second of each and its ratio to the baseline are
printed. Then, unless ``--no-target``, three runs train epoch by epoch until their test
-ELBO (binarized test set, the same evaluation for all) is at most ``--target`` nats: the
blog's path and recipe (lr 1e-3, batch 128, constant lr), the package at that recipe, and
the package at its best recipe (``--best-lr``, ``--best-batch-size``, a cosine schedule
over ``--best-epochs``), each stopping as soon as an epoch ends at the target. Their wall
times of training and the blog/best ratio are printed. The package trains as ``fit``
does: on CUDA with the CUDA-graph step. This is a measurement, not a test: it asserts
nothing.
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
from .training import (
    EpochProgress,
    epoch_runner,
    evaluate,
    make_optimizer,
    select_device,
    set_lr,
    test_loader,
    train_epoch,
    use_cuda_graph,
)

GRAPH_GOAL = 30  # what the CUDA-graph path aims for: this many times the blog's images/s


# The package's fastest recipe to a test -ELBO of 100 nats on a 2-core CPU, found by
# measurement (per-epoch test -ELBO, cosine schedules): batch 32 at lr 1e-3 reaches 99.8 after
# 4 epochs; batch 64 at 2e-3 needs 8, batch 128 at 3e-3 more than 6. Small batches win on a
# CPU because a step's cost there grows with the batch, while the number of updates counts.
BEST = {"lr": 1e-3, "batch_size": 32, "epochs": 6}


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


class Compiled(Ours):
    """Ours, with the model compiled by ``torch.compile(mode="reduce-overhead")``."""

    name = "ours + torch.compile"

    def __init__(self, device: torch.device):
        super().__init__(device)
        self.model = torch.compile(self.model, mode="reduce-overhead")  # same parameters


class _StopAfter:
    """A ``should_stop`` that says yes after ``steps`` calls (one call per step)."""

    def __init__(self, steps: int):
        self.left = steps

    def __call__(self) -> bool:
        self.left -= 1
        return self.left <= 0


class Graphed:
    """Ours, each step one CUDA-graph replay (``vae_tutorial.graphed``), as ``fit`` on CUDA."""

    name = "ours (CUDA graph)"

    def __init__(self, device: torch.device):
        self.device = device
        torch.manual_seed(0)
        self.model = VAE().to(device)
        self.optimizer = make_optimizer(self.model, lr=1e-3, capturable=True)
        images, labels = mnist_tensors(True, device=device)
        self.loader = TensorLoader(images, labels, 128, binarized=True)
        self.run_epoch = epoch_runner(graphed=True)  # captures at its first call

    def run(self, steps: int) -> int:
        full = self.loader.num_images // 128  # batches a replay can train
        done = 0
        while done < steps:
            n = min(steps - done, full)
            first = torch.randint(0, full - n + 1, ()).item()
            start = EpochProgress(step=first)
            stop = _StopAfter(n)
            self.run_epoch(self.model, self.loader, self.optimizer, start=start, should_stop=stop)
            done += n
        return done * 128


def throughput(
    device: torch.device, rounds: int, steps: int, compile: bool = False
) -> dict[str, float]:
    """Median images per second of each path over alternating timed rounds: the blog's,
    ours, on CUDA ours as CUDA-graph replays, with ``compile`` ours + torch.compile."""
    paths = [Baseline(device), Ours(device)]
    paths += [Graphed(device)] if device.type == "cuda" else []
    paths += [Compiled(device)] if compile else []
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


class Recipe:
    """The package's training as ``fit`` does it (on CUDA: the CUDA-graph step) with one
    recipe: ``lr``, ``batch_size``, and a cosine schedule over ``epochs`` (None: constant)."""

    def __init__(self, device: torch.device, name: str, lr: float, batch_size: int, epochs=None):
        self.name, self.max_epochs = name, epochs
        schedule = "cosine" if epochs else "constant"
        self.config = TrainConfig(
            epochs=epochs or 1, lr=lr, batch_size=batch_size, lr_schedule=schedule
        )
        torch.manual_seed(0)
        self.model = VAE().to(device)
        graphed = use_cuda_graph(None, device, self.config)
        self.optimizer = make_optimizer(self.model, lr, capturable=graphed)
        self.run_epoch = epoch_runner(graphed)
        images, labels = mnist_tensors(True, device=device)
        self.loader = TensorLoader(images, labels, batch_size, binarized=True)

    def epoch(self, index: int) -> None:
        set_lr(self.optimizer, self.config.lr_at(index))
        self.loader.set_epoch(index)
        self.run_epoch(self.model, self.loader, self.optimizer)

    def as_vae(self) -> VAE:
        return self.model


def time_to_target(
    device: torch.device,
    target: float,
    max_epochs: int,
    best_lr: float = BEST["lr"],
    best_batch_size: int = BEST["batch_size"],
    best_epochs: int = BEST["epochs"],
) -> dict[str, tuple]:
    """Wall time of training, epochs and final test -ELBO until each run's test -ELBO is
    at most ``target`` nats: the blog's path and recipe, the package at the blog's recipe,
    the package at its best recipe (which stops after ``best_epochs`` at the latest)."""
    test = test_loader(TrainConfig(), device)
    runs = (
        lambda: Baseline(device),
        lambda: Recipe(device, "ours (blog recipe)", 1e-3, 128),
        lambda: Recipe(device, "ours (best recipe)", best_lr, best_batch_size, best_epochs),
    )
    results = {}
    for make in runs:
        path = make()
        limit = getattr(path, "max_epochs", None) or max_epochs
        elapsed, value, epochs = 0.0, float("inf"), 0
        while value > target and epochs < limit:
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
    parser.add_argument(
        "--compile",
        action="store_true",
        help='also time ours + torch.compile(mode="reduce-overhead") (compiles first: minutes)',
    )
    parser.add_argument("--target", type=float, default=100.0, help="test -ELBO to reach (nats)")
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=30,
        help="give up on the target after this (blog recipe runs)",
    )
    parser.add_argument("--best-lr", type=float, default=BEST["lr"], help="best recipe: peak lr")
    parser.add_argument(
        "--best-batch-size", type=int, default=BEST["batch_size"], help="best recipe: batch"
    )
    parser.add_argument(
        "--best-epochs",
        type=int,
        default=BEST["epochs"],
        help="best recipe: epochs of its cosine schedule",
    )
    parser.add_argument("--no-target", action="store_true", help="skip the time-to-target runs")
    args = parser.parse_args(argv)
    if args.rounds <= 0 or args.steps <= 0:
        parser.error("--rounds and --steps must be positive")
    if args.max_epochs <= 0 or args.best_epochs <= 0 or args.best_batch_size <= 0:
        parser.error("--max-epochs, --best-epochs and --best-batch-size must be positive")
    if not args.best_lr > 0:
        parser.error("--best-lr must be positive")
    if args.device == "all":
        devices = [torch.device("cpu")] + (
            [torch.device("cuda")] if torch.cuda.is_available() else []
        )
    else:
        devices = [select_device(args.device)]
    print(f"torch {torch.__version__}; batch size 128; {args.rounds} rounds of {args.steps} steps")
    for device in devices:
        print(f"\n== {device.type}: {describe(device)}")
        rates = throughput(device, args.rounds, args.steps, args.compile)
        base = rates[Baseline.name]
        for name, rate in rates.items():
            ratio = "" if name == Baseline.name else f"  {rate / base:6.2f} x the blog's"
            goal = f" (goal: >= {GRAPH_GOAL} x)" if name == Graphed.name else ""
            print(f"{name:<22}{rate:>10,.0f} images/s (median){ratio}{goal}")
        if not args.no_target:
            best = (args.best_lr, args.best_batch_size, args.best_epochs)
            results = time_to_target(device, args.target, args.max_epochs, *best)
            print_time_to_target(results, args.target)
    return 0


def print_time_to_target(results: dict[str, tuple], target: float) -> None:
    """One line per run, then how many times faster the best recipe got there than the blog."""
    for name, (seconds, epochs, value) in results.items():
        status = "reached" if value <= target else "NOT reached"
        print(
            f"{name:<22} test -ELBO <= {target:g} {status}: {seconds:6.1f} s of training, "
            f"{epochs} epoch(s), {value:.2f} nats"
        )
    (blog, _, blog_value), *_, (best, _, best_value) = results.values()
    if blog_value <= target and best_value <= target:
        print(f"{'ratio blog / best':<22} {blog / best:6.2f} x (time to the target)")
    else:
        print(f"{'ratio blog / best':<22} not defined: a run did not reach the target")


if __name__ == "__main__":
    raise SystemExit(main())
