"""Command line: ``python -m vae_tutorial train ...`` and ``python -m vae_tutorial evaluate CKPT``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint
from .config import LOADERS, LR_SCHEDULES, PRESETS, TrainConfig
from .data import DATASETS, TITLES, MNISTUnavailableError, TensorLoader
from .devices import select_device
from .evaluation import active_units, evaluate, kl_per_unit, nll_estimate
from .likelihood import LIKELIHOODS
from .loaders import test_loader
from .training import TrainingInterrupted, fit

EXPECTED_ERRORS = (ValueError, CheckpointError, MNISTUnavailableError, FloatingPointError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_tutorial",
        description="Train and evaluate the VAE Tutorial Book's convolutional VAE on MNIST "
        "(or Fashion-MNIST).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = TrainConfig()
    train = commands.add_parser(
        "train",
        help="train a VAE and write OUT/checkpoint.pt after every epoch",
        description="Train a VAE on MNIST or Fashion-MNIST. Prints one line per epoch "
        "(losses in nats per image) and writes OUT/checkpoint.pt after every epoch.",
    )
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="start from a named recipe (options given too override it): "
        + "; ".join(f"{name}: {describe(name)}" for name in sorted(PRESETS)),
    )
    train.add_argument("--epochs", type=int, help=f"passes over the training set ({d.epochs})")
    train.add_argument("--latent-dim", type=int, help=f"size of z ({d.latent_dim})")
    train.add_argument("--batch-size", type=int, help=f"images per step ({d.batch_size})")
    train.add_argument("--lr", type=float, help=f"Adam's learning rate ({d.lr:g})")
    train.add_argument(
        "--lr-schedule", choices=LR_SCHEDULES, help=f"learning-rate schedule ({d.lr_schedule})"
    )
    train.add_argument("--beta", type=float, help=f"weight of the KL term, 1 = VAE ({d.beta:g})")
    train.add_argument(
        "--free-bits", type=float, help=f"nats per latent coordinate left free ({d.free_bits:g})"
    )
    train.add_argument(
        "--kl-warmup", type=int, help=f"epochs of linear KL warm-up from 0 ({d.kl_warmup})"
    )
    train.add_argument(
        "--conditional",
        action="store_const",
        const=True,
        help="a conditional VAE: encoder and decoder also see the digit's label",
    )
    train.add_argument("--dataset", choices=DATASETS, help=f"the images to train on ({d.dataset})")
    train.add_argument(
        "--likelihood",
        choices=LIKELIHOODS,
        help=f"the decoder's p(x|z) ({d.likelihood}); continuous-bernoulli is a density on "
        "grey levels, for use with --grey",
    )
    train.add_argument(
        "--iwae-k",
        type=int,
        help=f"importance samples per image in the training objective ({d.iwae_k}: the "
        "ELBO; k > 1: the IWAE bound of Burda et al.)",
    )
    train.add_argument("--seed", type=int, help=f"random seed ({d.seed})")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--out", type=Path, default=Path("runs/vae"), help="output folder")
    train.add_argument(
        "--grey", action="store_true", help="train on grey levels, not binarized pixels"
    )
    train.add_argument("--loader", choices=LOADERS, help=f"data path ({d.loader})")
    train.add_argument("--train-size", type=int, help="use the first N training images (all)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--no-graph",
        action="store_true",
        help="on CUDA, train with the eager step instead of one CUDA-graph replay per step "
        "(the same arithmetic; for debugging and comparison)",
    )
    ev = commands.add_parser(
        "evaluate",
        help="print the test -ELBO of a checkpoint",
        description="Print a checkpoint's test -ELBO in nats per image (one z per image), "
        "on the test set of the data set it was trained on.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ev.add_argument(
        "--k",
        type=int,
        default=None,
        help="also estimate the test NLL with K importance samples per image (IWAE bound)",
    )
    ev.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    return parser


OPTIONS = (  # command-line options that set a TrainConfig field of the same name
    "epochs",
    "latent_dim",
    "batch_size",
    "lr",
    "lr_schedule",
    "beta",
    "free_bits",
    "kl_warmup",
    "conditional",
    "seed",
    "dataset",
    "likelihood",
    "iwae_k",
    "loader",
    "train_size",
)


def describe(preset: str) -> str:
    return ", ".join(f"{key}={value}" for key, value in PRESETS[preset].items())


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The defaults, overridden by ``--preset``, overridden by the options given."""
    values = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None})
    if args.grey:
        values["binarized"] = False
    return TrainConfig(**values)


def check_out_folder(out: Path) -> None:
    """Raise ``ValueError`` if ``out``, or a folder it would be made in, is a file."""
    file = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise ValueError(f"--out must be a folder, but {file} is a file; choose another --out")


def run_train(args: argparse.Namespace) -> None:
    config = train_config(args)
    device = select_device(args.device)
    check_out_folder(args.out)
    path = args.out / "checkpoint.pt"
    if path.exists() and not args.resume:
        raise ValueError(f"{path} exists; pass --resume to continue it or choose another --out")
    if args.resume and not path.exists():  # a typo in --out must not start a new run
        raise ValueError(
            f"no checkpoint to resume in {args.out} (no {path.name} there); check --out, or "
            "leave out --resume to start a new run there"
        )
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 speaks
    if main:
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        on = f"{ranks} processes ({device.type})" if ranks > 1 else str(device)
        print(f"training on {on} for {config.epochs} epoch(s); checkpoint: {path}", flush=True)
    graphed = False if args.no_graph else None  # None: CUDA graphs where possible
    try:
        fit(
            config,
            device,
            path,
            resume=args.resume,
            progress=not args.no_progress,
            graphed=graphed,
        )
    except TrainingInterrupted as stop:
        print(
            f"\ninterrupted in epoch {stop.epoch} after step {stop.step}: {path} holds the run "
            "so far; continue it with the same command plus --resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, mid-step
        print(
            f"\ninterrupted: {path} holds the last finished epoch; continue it with the same "
            "command plus --resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    if main:
        print(f"saved {path}")


def run_evaluate(args: argparse.Namespace) -> None:
    device = select_device(args.device)
    if args.k is not None and args.k <= 0:
        raise ValueError(f"--k must be a positive number of samples, got {args.k}")
    if args.limit is not None and not 0 < args.limit <= 10_000:
        raise ValueError(f"--limit must be in 1..10000, got {args.limit}")
    state = load_checkpoint(args.checkpoint, device)
    data = test_loader(state.config, device)
    if args.limit is not None:
        data = TensorLoader(data.images[: args.limit], data.labels[: args.limit], 1000, False)
    result = evaluate(state.model, data)
    kind = "binarized" if state.config.binarized else "grey-level"
    kind += " " + TITLES[state.config.dataset]
    kind += " test images"
    if state.config.likelihood != "bernoulli":  # nats of a density: may be negative
        kind += f" (likelihood: {state.config.likelihood})"
    print(
        f"test -ELBO {result['neg_elbo']:.2f} nats per image "
        f"(recon {result['recon']:.2f} + KL {result['kl']:.2f}) on {data.num_images} {kind}, "
        f"after {state.epoch} epoch(s)"
    )
    kl = kl_per_unit(state.model, data)
    print(
        f"active units: {active_units(kl)} of {len(kl)} "
        f"(latent coordinates whose mean KL is above 0.01 nats)"
    )
    if args.k is not None:
        small = TensorLoader(data.images, data.labels, max(1, 20_000 // args.k), False)
        nll, se = nll_estimate(state.model, small, args.k)
        print(f"test NLL (IWAE bound, K={args.k}) {nll:.2f} +- {se:.2f} nats per image")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": run_train, "evaluate": run_evaluate}[args.command](args)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
