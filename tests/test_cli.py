import re
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "vae_tutorial", *args], capture_output=True, text=True, cwd=cwd
    )


def test_train_then_evaluate(tmp_path, mnist_root):
    out = tmp_path / "run"
    result = run(
        "train",
        "--epochs",
        "2",
        "--train-size",
        "2000",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and "test -ELBO" in epochs[0]
    assert (out / "checkpoint.pt").exists()
    result = run("evaluate", str(out / "checkpoint.pt"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test -ELBO ") and "after 2 epoch(s)" in result.stdout
    active = re.search(r"active units: (\d+) of 20 ", result.stdout)
    assert active and 0 <= int(active.group(1)) <= 20, result.stdout
    result = run(
        "evaluate", str(out / "checkpoint.pt"), "--device", "cpu", "--k", "20", "--limit", "100"
    )
    assert result.returncode == 0, result.stderr
    assert "on 100 binarized MNIST test images" in result.stdout
    assert "test NLL (IWAE bound, K=20)" in result.stdout and "+-" in result.stdout
    # training into a folder that has a checkpoint must not overwrite it silently
    again = run("train", "--epochs", "1", "--out", str(out), "--device", "cpu")
    assert again.returncode == 2 and "--resume" in again.stderr


def test_help_lists_the_options():
    result = run("train", "--help")
    assert result.returncode == 0
    for option in (
        "--epochs",
        "--latent-dim",
        "--batch-size",
        "--lr",
        "--beta",
        "--device",
        "--seed",
        "--out",
    ):
        assert option in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "epochs must be a positive integer"),
        (["train", "--latent-dim", "-2"], "latent_dim"),
        (["train", "--device", "tpu"], "unknown device"),
        (["evaluate", "nowhere.pt"], "no checkpoint at nowhere.pt"),
        (["evaluate", "nowhere.pt", "--k", "0"], "--k must be a positive number"),
        (["evaluate", "nowhere.pt", "--limit", "0"], "--limit must be in 1..10000"),
        (["train", "--batch-size", "0"], "batch_size must be a positive integer"),
        (["train", "--lr", "-1"], "lr must be a positive finite number"),
        (["train", "--beta", "nan"], "beta must be a non-negative finite number"),
        (["train", "--device", "cuda:7"], "cuda"),
        (["train", "--train-size", "70000"], "train_size must be in 1..60000"),
        (["train", "--free-bits", "-1"], "free_bits must be a non-negative"),
        (["train", "--kl-warmup", "-2"], "kl_warmup must be a number of epochs"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, message, tmp_path):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_preset_sets_the_recipe_and_options_override_it():
    from vae_tutorial.cli import build_parser, train_config
    from vae_tutorial.config import PRESETS

    parse = build_parser().parse_args
    assert (
        train_config(parse(["train", "--preset", "fast"])).to_dict().items()
        >= PRESETS["fast"].items()
    )
    config = train_config(parse(["train", "--preset", "long", "--epochs", "3", "--conditional"]))
    assert config.epochs == 3 and config.lr_schedule == "cosine" and config.conditional
    assert train_config(parse(["train"])) == __import__("vae_tutorial").TrainConfig()
    result = run("train", "--preset", "huge")
    assert result.returncode == 2 and "invalid choice: 'huge'" in result.stderr


def test_resume_without_a_checkpoint_refuses_and_names_the_folder(tmp_path):
    # a typo in --out must not start a new run in place of the one meant to continue
    out = tmp_path / "typo"
    result = run("train", "--resume", "--epochs", "1", "--out", str(out), "--device", "cpu")
    assert result.returncode == 2
    assert f"no checkpoint to resume in {out}" in result.stderr
    assert "leave out --resume" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("below", ["", "sub"])
def test_out_naming_a_file_says_it_must_be_a_folder(tmp_path, below):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    result = run("train", "--epochs", "1", "--out", str(blocker / below), "--device", "cpu")
    assert result.returncode == 2
    assert f"--out must be a folder, but {blocker} is a file" in result.stderr
    assert "Errno" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_huge_latent_dim_is_refused_before_training(tmp_path):
    result = run("train", "--latent-dim", "99999999", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "latent_dim must be in 1..784" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "training on" not in result.stdout


def test_train_and_evaluate_on_fashion_mnist(tmp_path, fashion_root):
    out = tmp_path / "fm"
    common = ("--device", "cpu", "--out", str(out), "--no-progress", "--train-size", "1000")
    result = run("train", "--dataset", "fashion-mnist", "--epochs", "1", *common)
    assert result.returncode == 0, result.stderr
    result = run("evaluate", str(out / "checkpoint.pt"), "--device", "cpu", "--limit", "500")
    assert result.returncode == 0, result.stderr
    assert "on 500 binarized Fashion-MNIST test images, after 1 epoch(s)" in result.stdout
    # the data set is part of the run: resuming it on MNIST is another run
    again = run("train", "--epochs", "2", "--resume", *common)
    assert again.returncode == 2 and "same settings" in again.stderr


def test_an_unknown_dataset_is_refused_by_the_parser():
    result = run("train", "--dataset", "cifar10")
    assert result.returncode == 2 and "invalid choice: 'cifar10'" in result.stderr


def test_train_and_evaluate_with_the_continuous_bernoulli(tmp_path, mnist_root):
    out = tmp_path / "cb"
    common = ("--device", "cpu", "--out", str(out), "--no-progress", "--train-size", "1000")
    result = run(
        "train", "--likelihood", "continuous-bernoulli", "--grey", "--epochs", "1", *common
    )
    assert result.returncode == 0, result.stderr
    result = run("evaluate", str(out / "checkpoint.pt"), "--device", "cpu", "--limit", "500")
    assert result.returncode == 0, result.stderr
    assert "on 500 grey-level MNIST test images (likelihood: continuous-bernoulli)" in (
        result.stdout
    )


def test_an_unknown_likelihood_is_refused_by_the_parser():
    result = run("train", "--likelihood", "gaussian")
    assert result.returncode == 2 and "invalid choice: 'gaussian'" in result.stderr
