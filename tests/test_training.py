import os
import subprocess
import sys

import pytest
import torch

import vae_tutorial.cache as cache
from vae_tutorial import (
    VAE,
    TensorLoader,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    load_or_train,
    select_device,
)
from vae_tutorial.loaders import test_loader as make_test_loader

QUICK = TrainConfig(epochs=2, train_size=10_000, seed=7)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist_root):
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    model, history = fit(QUICK, "cpu", checkpoint=path, progress=False, verbose=False)
    return model, history, path


def test_short_training_lowers_test_loss_below_a_bound(quick_run):
    model, history, _ = quick_run
    # an untrained decoder says p = 1/2 per pixel: 784 ln 2 = 543 nats; predicting the
    # average digit for every image costs about 206 nats. Two passes over 10,000 images
    # must beat both on the binarized test set, and the second must beat the first.
    first, second = history["test_neg_elbo"]
    assert second < first and second < 200
    torch.testing.assert_close(second, history["test_recon"][1] + history["test_kl"][1])


def test_same_seed_gives_identical_weights_and_losses(quick_run):
    model, history, _ = quick_run
    again, history2 = fit(QUICK, "cpu", progress=False, verbose=False)
    assert history2["train_loss"] == history["train_loss"]
    assert history2["test_neg_elbo"] == history["test_neg_elbo"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_round_trip_gives_identical_outputs(quick_run):
    model, history, path = quick_run
    state = load_checkpoint(path)
    assert state.config == QUICK and state.epoch == 2 and state.history == history
    x = torch.rand(5, 1, 28, 28)
    model.eval()
    assert torch.equal(state.model.reconstruct(x), model.reconstruct(x))
    assert set(state.optimizer_state) == {"state", "param_groups"}


def test_evaluation_is_deterministic_and_leaves_the_rng_alone(quick_run, mnist_root):
    model, _, _ = quick_run
    data = make_test_loader(QUICK, torch.device("cpu"))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    assert evaluate(model, data) == evaluate(model, data)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_leaves_the_model_in_the_mode_it_was_in(mode):
    model = VAE(2).train(mode)
    images = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    evaluate(model, TensorLoader(images, torch.zeros(8), batch_size=4, shuffle=False))
    assert model.training is mode


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch, mnist_root):
    config = TrainConfig(epochs=1, train_size=1_000)
    model, history = load_or_train(config, tmp_path, "cpu", progress=False, verbose=False)
    assert (tmp_path / f"vae-{config.key()}.pt").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train retrained a cached model")

    monkeypatch.setattr(cache, "fit", no_training)
    cached, cached_history = load_or_train(config, tmp_path, "cpu")
    assert cached_history == history
    for a, b in zip(model.state_dict().values(), cached.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(None).type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("beta", -1.0),
        ("loader", "pandas"),
        ("train_size", 0),
        ("seed", -1),
        ("latent_dim", 0),
        ("lr_schedule", "linear"),
        ("free_bits", -0.5),
        ("kl_warmup", -1),
        ("conditional", "yes"),
    ],
)
def test_bad_configs_raise(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_cosine_schedule_and_kl_warmup():
    cosine = TrainConfig(epochs=4, lr=2e-3, lr_schedule="cosine")
    assert [round(cosine.lr_at(e), 6) for e in range(4)] == [0.002, 0.001707, 0.001, 0.000293]
    assert TrainConfig(lr=2e-3).lr_at(3) == 2e-3
    warm = TrainConfig(beta=2.0, kl_warmup=2)
    steps = [warm.kl_weight(0, 0, 10), warm.kl_weight(0, 9, 10), warm.kl_weight(1, 9, 10)]
    assert steps == [0.1, 1.0, 2.0] and warm.kl_weight(5, 0, 10) == 2.0
    assert TrainConfig(beta=0.5).kl_weight(0, 0, 10) == 0.5
    # a cosine run depends on its length: it cannot be resumed with other epochs
    assert not cosine.same_run(TrainConfig(epochs=8, lr=2e-3, lr_schedule="cosine"))
    assert TrainConfig(epochs=3).same_run(TrainConfig(epochs=8))


def test_new_fields_leave_old_cache_keys_alone():
    # the key of the book's 10-epoch model, as computed before these fields existed
    assert TrainConfig(epochs=10).key() == "109644431f71"
    assert TrainConfig(epochs=10, free_bits=0.25).key() != TrainConfig(epochs=10).key()


def test_free_bits_keeps_more_units_active(mnist_root):
    from vae_tutorial.evaluation import active_units, kl_per_unit

    units = {}
    for free_bits in (0.0, 0.5):  # beta = 8 collapses most units within 160 steps
        config = TrainConfig(
            epochs=2, train_size=10_000, lr=2e-3, beta=8.0, free_bits=free_bits, seed=1
        )
        model, _ = fit(config, "cpu", progress=False, verbose=False)
        units[free_bits] = active_units(kl_per_unit(model, make_test_loader(config, "cpu")))
    assert units[0.5] == 20 > units[0.0]  # measured: 20 against 11


def test_two_processes_that_need_one_cached_model_train_it_once(tmp_path, mnist_root):
    """The second process waits for the first (a lock beside the checkpoint), then loads."""
    code = (
        "import vae_tutorial as vt; "
        f"vt.load_or_train(vt.TrainConfig(epochs=1, train_size=1024), cache_dir=r'{tmp_path}', "
        "device='cpu', progress=False)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    printed = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert sum(text.count("epoch   1/1") for text in printed) == 1, printed
