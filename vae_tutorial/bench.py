"""Benchmark: the blog's training path against the package's, in one process.

    python -m vae_tutorial.bench [--device cpu|cuda|all] [--rounds 5] [--steps 100]
                                 [--compile] [--target 100] [--no-target]
                                 [--best-batch-size B] [--best-lr LR] [--best-epochs E]
                                 [--best-step graph|eager]

Each run is named with its recipe (a :class:`Setup`: batch size, lr, schedule, eager step
or CUDA graph). Two measurements per device:

- images per second: timed rounds of ``--steps`` steps alternate between the paths, so that
  all see the same machine state, all at the blog's recipe (Adam, lr 1e-3, batch 128, the
  summed negative ELBO): the blog post as written (a ``DataLoader`` over ``ToTensor``
  images, ``BCELoss(reduction='sum')``, ``loss.item()`` every step); the package's step
  (:func:`vae_tutorial.epoch.train_epoch` on a device-resident, binarized
  :class:`~vae_tutorial.data.TensorLoader`); on CUDA the same step as one CUDA-graph replay
  (:mod:`vae_tutorial.graphed`, what ``fit`` trains with there); with ``--compile`` the
  model under ``torch.compile(mode="reduce-overhead")``. The median of each is printed
  with its ratio to the blog's, then the fastest package path's ratio.
- time to a test -ELBO of ``--target`` nats (unless ``--no-target``): training epoch by
  epoch, each run stopping as soon as an epoch ends at the target (binarized test set, the
  same evaluation for all): the blog's path and recipe, the package at the blog's recipe
  (trained as ``fit`` trains it: on CUDA with the CUDA graph), and the package at the
  device's best recipe (:data:`BEST`, or the ``--best-*`` options), which runs only if it
  differs from the blog's. The seconds of training are printed, then the fastest package
  run's ratio to the blog's.

This is a measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from typing import NamedTuple

import torch

from .blog import BlogVAE, blog_loss, blog_train_loader
from .config import TrainConfig
from .data import TensorLoader, mnist_tensors
from .devices import select_device
from .epoch import EpochProgress, train_epoch
from .evaluation import evaluate
from .loaders import test_loader
from .model import VAE
from .optim import make_optimizer, set_lr
from .training import epoch_runner, use_cuda_graph

GRAPH_GOAL = 30  # what the CUDA-graph path aims for: this many times the blog's images/s


@dataclasses.dataclass(frozen=True)
class Setup:
    """A run's recipe: batch size, peak learning rate, a cosine schedule over ``epochs``
    (None: the blog's constant lr), and the step: eager, one CUDA-graph replay, or compiled."""

    batch_size: int
    lr: float
    epochs: int | None = None
    graphed: bool = False
    compiled: bool = False

    def __str__(self) -> str:
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        schedule = f"cosine over {epochs}" if self.epochs else "constant lr"
        step = "CUDA graph" if self.graphed else "torch.compile" if self.compiled else "eager"
        return f"batch {self.batch_size}, lr {self.lr:g}, {schedule}, {step}"


BLOG = Setup(batch_size=128, lr=1e-3)  # the blog's recipe, as the blog trains it: eager

# The package's fastest recipe to a test -ELBO of 100 nats, per device, each measured.
BEST = {
    # On the 2-core CPU (AMD EPYC VM, torch 2.14.1, 2026-11-26, `python -m vae_tutorial.bench
    # --device cpu --target 100`, per-epoch test -ELBO, cosine schedules): batch 32 at lr 1e-3
    # reaches 99.8 after 4 epochs (109.9 s, 2.72 x the blog's 299.0 s; the package at the
    # blog's recipe took 122.8 s); batch 64 at 2e-3 needs 8, batch 128 at 3e-3 more than 6.
    # Small batches win on a CPU because a step's cost there grows with the batch, while the
    # number of updates counts. 6 epochs, so that a run that just misses 100 at epoch 4 still
    # gets there at epoch 5.
    "cpu": Setup(batch_size=32, lr=1e-3, epochs=6),
    # On one NVIDIA H200 (torch 2.11, `python -m vae_tutorial.bench --device cuda`, issue
    # #22): the blog's recipe with the CUDA-graph step reached 100 in 2.0 s (7 epochs), the
    # blog's path in 57.9 s (8 epochs), the CPU's recipe above (CUDA graph) in 4.5 s (5 epochs).
    # A replay costs about as much at batch 32 as at 128 (about 0.5 and 0.6 ms a step), so on
    # a GPU the recipe with fewer steps wins: the blog's own.
    "cuda": Setup(batch_size=128, lr=1e-3, graphed=True),
}


def best_setup(
    device: torch.device,
    batch_size: int | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    graphed: bool | None = None,
) -> Setup:
    """The best recipe on ``device``: ``BEST[device.type]`` (the CPU's on a device without
    its own), each argument that is not None replacing its field; ``epochs=0``: constant lr."""
    best = BEST.get(device.type, BEST["cpu"])
    given = {"batch_size": batch_size, "lr": lr, "epochs": epochs, "graphed": graphed}
    best = dataclasses.replace(best, **{k: v for k, v in given.items() if v is not None})
    return dataclasses.replace(best, epochs=best.epochs or None)


def package_runs(device: torch.device, best: Setup) -> dict[str, Setup]:
    """The package's time-to-target runs on ``device``: the blog's recipe trained as ``fit``
    trains it there (on CUDA: CUDA graph), and ``best`` unless it is that same recipe."""
    blog = dataclasses.replace(BLOG, graphed=use_cuda_graph(None, device, TrainConfig()))
    if best == blog:
        return {"ours (blog = best recipe)": blog}
    return {"ours (blog recipe)": blog, "ours (best recipe)": best}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless(loader):
    while True:
        yield from loader


class Baseline:
    """The blog's loop, one step at a time, from a DataLoader over ToTensor images."""

    name = "baseline (blog)"
    setup = BLOG

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
    setup = BLOG

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
    setup = dataclasses.replace(BLOG, compiled=True)

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
    setup = dataclasses.replace(BLOG, graphed=True)

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


PATHS = (Baseline, Ours, Graphed, Compiled)
SETUPS = {path.name: path.setup for path in PATHS}  # each throughput path's recipe


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


def fastest_path(rates: dict[str, float]) -> str:
    """The package path with the most images per second (the blog's is not a candidate)."""
    return max((name for name in rates if name != Baseline.name), key=rates.__getitem__)


class Recipe:
    """The package's training as ``fit`` does it, with one :class:`Setup`: its batch size,
    its lr (constant, or a cosine schedule over its epochs) and its step."""

    def __init__(self, device: torch.device, name: str, setup: Setup):
        self.name, self.setup, self.max_epochs = name, setup, setup.epochs
        schedule = "cosine" if setup.epochs else "constant"
        self.config = TrainConfig(
            epochs=setup.epochs or 1,
            lr=setup.lr,
            batch_size=setup.batch_size,
            lr_schedule=schedule,
        )
        torch.manual_seed(0)
        self.model = VAE().to(device)
        graphed = use_cuda_graph(setup.graphed, device, self.config)
        self.optimizer = make_optimizer(self.model, setup.lr, capturable=graphed)
        self.run_epoch = epoch_runner(graphed)
        images, labels = mnist_tensors(True, device=device)
        self.loader = TensorLoader(images, labels, setup.batch_size, binarized=True)

    def epoch(self, index: int) -> None:
        set_lr(self.optimizer, self.config.lr_at(index))
        self.loader.set_epoch(index)
        self.run_epoch(self.model, self.loader, self.optimizer)

    def as_vae(self) -> VAE:
        return self.model


class Run(NamedTuple):
    """One time-to-target run: seconds of training, epochs, final test -ELBO, its recipe."""

    seconds: float
    epochs: int
    neg_elbo: float
    setup: Setup


def time_to_target(
    device: torch.device, target: float, max_epochs: int, best: Setup | None = None
) -> dict[str, Run]:
    """Training time, epochs and final test -ELBO until each run's test -ELBO is at most
    ``target`` nats: the blog's path and recipe, then :func:`package_runs` with ``best``
    (default: the device's :func:`best_setup`). A cosine run stops after its epochs at the
    latest, a constant-lr one after ``max_epochs``."""
    test = test_loader(TrainConfig(), device)
    runs = [lambda: Baseline(device)]
    for name, setup in package_runs(device, best or best_setup(device)).items():
        runs.append(lambda name=name, setup=setup: Recipe(device, name, setup))
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
        results[path.name] = Run(elapsed, epochs, value, path.setup)
    return results


def fastest_run(results: dict[str, Run], target: float) -> str | None:
    """The package run that reached ``target`` in the least training time (None if none)."""
    reached = [n for n, run in results.items() if n != Baseline.name and run.neg_elbo <= target]
    return min(reached, key=lambda name: results[name].seconds, default=None)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)}"


def print_throughput(rates: dict[str, float]) -> None:
    """One line per path with its recipe and ratio to the blog's, then the fastest's ratio."""
    base = rates[Baseline.name]
    for name, rate in rates.items():
        ratio = "" if name == Baseline.name else f" {rate / base:6.2f} x the blog's"
        goal = f" (goal: >= {GRAPH_GOAL} x)" if name == Graphed.name else ""
        print(f"{name:<26}{rate:>10,.0f} images/s{ratio}{goal}  [{SETUPS[name]}]")
    best = fastest_path(rates)
    print(
        f"{'fastest package path':<26}{best} [{SETUPS[best]}]: "
        f"{rates[best] / base:.2f} x the blog's images/s"
    )


def print_time_to_target(results: dict[str, Run], target: float) -> None:
    """One line per run with its recipe, then how many times faster than the blog the
    fastest package run got to the target."""
    for name, run in results.items():
        status = "reached" if run.neg_elbo <= target else "NOT reached"
        print(
            f"{name:<26}test -ELBO <= {target:g} {status}: {run.seconds:6.1f} s of training, "
            f"{run.epochs} epoch(s), {run.neg_elbo:.2f} nats  [{run.setup}]"
        )
    blog, best = results[Baseline.name], fastest_run(results, target)
    if best is None:
        print(f"{'fastest package run':<26}none reached the target: ratio not defined")
    elif blog.neg_elbo > target:
        print(
            f"{'fastest package run':<26}{best} [{results[best].setup}]; the blog's did not "
            f"reach the target in {blog.epochs} epochs (--max-epochs): ratio not defined"
        )
    else:
        run = results[best]
        ratio = blog.seconds / run.seconds
        print(
            f"{'fastest package run':<26}{best} [{run.setup}]: {ratio:.2f} x faster than the "
            f"blog's to the target ({run.seconds:.1f} s against {blog.seconds:.1f} s)"
        )


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
        help="give up on the target after this (constant-lr runs)",
    )
    per_device = "; default per device: " + ", ".join(f"{k} {v}" for k, v in BEST.items())
    parser.add_argument("--best-batch-size", type=int, help="best recipe: batch size" + per_device)
    parser.add_argument("--best-lr", type=float, help="best recipe: peak lr")
    parser.add_argument(
        "--best-epochs", type=int, help="best recipe: epochs of its cosine schedule (0: constant)"
    )
    parser.add_argument(
        "--best-step",
        choices=["graph", "eager"],
        help="best recipe: CUDA graph (CUDA only) or eager",
    )
    parser.add_argument("--no-target", action="store_true", help="skip the time-to-target runs")
    args = parser.parse_args(argv)
    if args.rounds <= 0 or args.steps <= 0:
        parser.error("--rounds and --steps must be positive")
    if args.max_epochs <= 0 or (args.best_batch_size is not None and args.best_batch_size <= 0):
        parser.error("--max-epochs and --best-batch-size must be positive")
    if args.best_epochs is not None and args.best_epochs < 0:
        parser.error("--best-epochs must be positive, or 0 for a constant lr")
    if args.best_lr is not None and not args.best_lr > 0:
        parser.error("--best-lr must be positive")
    if args.device == "all":
        devices = [torch.device("cpu")] + (
            [torch.device("cuda")] if torch.cuda.is_available() else []
        )
    else:
        devices = [select_device(args.device)]
    if args.best_step == "graph" and any(d.type != "cuda" for d in devices):
        parser.error("--best-step graph needs --device cuda: CUDA graphs run on CUDA only")
    graphed = None if args.best_step is None else args.best_step == "graph"
    print(f"torch {torch.__version__}; {args.rounds} round(s) of {args.steps} steps")
    for device in devices:
        print(f"\n== {device.type}: {describe(device)}")
        best = best_setup(device, args.best_batch_size, args.best_lr, args.best_epochs, graphed)
        print(f"{'best recipe here':<26}{best}")
        print_throughput(throughput(device, args.rounds, args.steps, args.compile))
        if not args.no_target:
            print_time_to_target(
                time_to_target(device, args.target, args.max_epochs, best), args.target
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
