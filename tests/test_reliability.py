"""Faults injected on purpose: killed and interrupted training, NaN losses, crashes while
writing, damaged or foreign checkpoints. None may lose work or end in a bare traceback."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vae_tutorial.objectives as objectives
from vae_tutorial import (
    VAE,
    CheckpointError,
    TrainConfig,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from vae_tutorial.checkpoint import FORMAT_VERSION
from vae_tutorial.epoch import CHECK_EVERY, NonFiniteLossError

RUN = ["--epochs", "3", "--train-size", "12000", "--device", "cpu", "--no-progress", "--seed", "3"]


def train(out, *extra, wait=True):
    cmd = [sys.executable, "-m", "vae_tutorial", "train", *RUN, "--out", str(out), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        stdout, stderr = proc.communicate(timeout=300)
        return proc.returncode, stdout, stderr
    return proc


def wait_for_epoch(path, epoch, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and load_checkpoint(path).epoch >= epoch:
            return
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} after {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_root):
    out = tmp_path_factory.mktemp("whole")
    code, _, stderr = train(out)
    assert code == 0, stderr
    return load_checkpoint(out / "checkpoint.pt")


def assert_same_run(a, b):
    assert a.epoch == b.epoch == 3 and a.history["epoch"] == b.history["epoch"]
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    torch.testing.assert_close(a.history["train_loss"], b.history["train_loss"], rtol=1e-6, atol=0)
    assert a.history["test_neg_elbo"] == b.history["test_neg_elbo"]


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path, uninterrupted):
    proc = train(tmp_path, wait=False)
    wait_for_epoch(tmp_path / "checkpoint.pt", 1, proc)
    time.sleep(0.5)  # into epoch 2
    proc.kill()  # SIGKILL: no handler runs, no chance to save
    proc.wait(timeout=30)
    killed_at = load_checkpoint(tmp_path / "checkpoint.pt")
    assert 1 <= killed_at.epoch < 3, "the kill must land before training finished"
    assert not list(tmp_path.glob(".*.tmp")), "no half-written temporary file is left"
    code, stdout, stderr = train(tmp_path, "--resume")
    assert code == 0, stderr
    assert_same_run(load_checkpoint(tmp_path / "checkpoint.pt"), uninterrupted)


def test_ctrl_c_saves_mid_epoch_says_how_to_resume_and_resumes_exactly(tmp_path, uninterrupted):
    proc = train(tmp_path, wait=False)
    wait_for_epoch(tmp_path / "checkpoint.pt", 1, proc)
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state.epoch < 3
    code, _, stderr = train(tmp_path, "--resume")
    assert code == 0, stderr
    assert_same_run(load_checkpoint(tmp_path / "checkpoint.pt"), uninterrupted)


@pytest.mark.parametrize("bad_step", [7, 30])
def test_a_nan_loss_stops_within_check_every_steps_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, mnist_root, bad_step
):
    # 60 steps per epoch; the loss of epoch 2's step bad_step (from 0) is NaN. The run
    # must name that step, stop at the next check (within CHECK_EVERY steps, long before
    # the epoch's end) and leave epoch 1's checkpoint, as the maintainers' page promises
    promise = (Path(__file__).parents[1] / "book" / "maintainers.md").read_text()
    assert f"A NaN or infinite loss stops training within {CHECK_EVERY} steps" in promise
    config = TrainConfig(epochs=2, train_size=60 * 128, seed=1)
    path = tmp_path / "checkpoint.pt"
    calls = {"n": 0}
    real_loss = objectives.vae_loss  # what the ELBO objective of each step calls

    def loss_that_breaks(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        if not torch.is_grad_enabled():  # an evaluation (under no_grad), not a training step
            return terms
        calls["n"] += 1
        if calls["n"] == 60 + bad_step + 1:
            return terms._replace(total=terms.total * float("nan"))
        return terms

    monkeypatch.setattr(objectives, "vae_loss", loss_that_breaks)
    with pytest.raises(
        NonFiniteLossError, match=rf"epoch 2, step {bad_step}\b.*lower the learning rate"
    ) as info:
        fit(config, "cpu", checkpoint=path, progress=False, verbose=False)
    assert str(path) in str(info.value)
    steps_in_epoch_2 = calls["n"] - 60
    assert bad_step < steps_in_epoch_2 <= bad_step + CHECK_EVERY < 60
    assert steps_in_epoch_2 % CHECK_EVERY == 0, "it stopped at a check"
    assert load_checkpoint(path).epoch == 1


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = VAE(2), None
    optimizer = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "c.pt", model, optimizer, TrainConfig(latent_dim=2), 1, {})
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="No space left on device.*free some disk space"):
        save_checkpoint(path, model, optimizer, TrainConfig(latent_dim=2), 2, {})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.fixture
def saved(tmp_path):
    model = VAE(4)
    optimizer = torch.optim.Adam(model.parameters())
    return save_checkpoint(tmp_path / "c.pt", model, optimizer, TrainConfig(latent_dim=4), 1, {})


def test_truncated_checkpoint(saved):
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted.*delete it and train again"):
        load_checkpoint(saved)


@pytest.mark.parametrize("seed", range(20))
def test_garbage_checkpoint(saved, seed):
    saved.write_bytes(random.Random(seed).randbytes(4096))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(saved)


@pytest.mark.parametrize("cut", [1, 100, 1000, 10_000])
def test_checkpoint_cut_anywhere(saved, cut):
    saved.write_bytes(saved.read_bytes()[:cut])
    with pytest.raises(CheckpointError, match="delete it and train again"):
        load_checkpoint(saved)


def test_checkpoint_from_another_architecture(saved):
    state = torch.load(saved, weights_only=True)
    state["config"]["latent_dim"] = 20  # the weights are for 4
    torch.save(state, saved)
    with pytest.raises(
        CheckpointError, match="does not hold a model this package can build"
    ) as info:
        load_checkpoint(saved)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_checkpoint_from_a_future_version(saved):
    state = torch.load(saved, weights_only=True)
    state["format_version"] = FORMAT_VERSION + 1
    torch.save(state, saved)
    with pytest.raises(CheckpointError, match="newer than this package.*upgrade"):
        load_checkpoint(saved)


def test_resume_with_other_settings_is_refused(saved):
    with pytest.raises(CheckpointError, match="resume with the same settings"):
        fit(
            TrainConfig(latent_dim=8, epochs=2), "cpu", checkpoint=saved, resume=True, verbose=False
        )
