"""Distributed training: 2 CPU processes (Gloo) launched with torchrun must follow the
same trajectory as one process with the same global batch and seed, compute the same
gradient at every step (the loss scaling, free bits), and only rank 0 may write files or
print."""

import subprocess
import sys

import pytest
import torch

from vae_tutorial import TensorLoader, fixed_binarized, load_checkpoint, mnist_tensors
from vae_tutorial.loss import kl_per_dim

RUN = ["--train-size", "2048", "--device", "cpu", "--no-progress", "--seed", "5"]


def train(out, epochs, *extra, processes=1):
    launcher = [sys.executable, "-m", "vae_tutorial"]
    if processes > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "vae_tutorial",
        ]
    cmd = [*launcher, "train", "--epochs", str(epochs), *RUN, "--out", str(out), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_model(a, b):
    """Two runs that must follow one trajectory give the same model, to the precision a
    user sees: every epoch's training loss and the test -ELBO to 0.01 nats (the book
    reports two decimals), and reconstructions to 1e-3 per pixel probability on average (a
    quarter of one grey level; a few single pixels may drift by a grey level or two, as
    training carries rounding differences along). A real fault (other data, other noise)
    moves them by whole nats and grey levels; float rounding does not.

    Raw weights are no measure: the all-reduce adds gradients in another order than one
    process, and Adam divides each gradient by the root of its running square, so for the
    weights whose gradient is all but zero (fed by pixels that are blank in every image)
    that rounding noise becomes a full step of random sign, on one CPU more than another.
    Those weights change no output."""
    assert a.epoch == b.epoch and a.history["epoch"] == b.history["epoch"]  # exact
    for key in ("train_loss", "test_neg_elbo"):
        for x, y in zip(a.history[key], b.history[key], strict=True):
            assert abs(x - y) < 0.01, (key, x, y)
    images, _ = mnist_tensors(train=False)
    digits = fixed_binarized(images[:256])
    gap = (a.model.reconstruct(digits) - b.model.reconstruct(digits)).abs().mean()
    assert gap < 1e-3, f"reconstructions differ by {gap:.1e} per pixel on average"


@pytest.fixture(scope="module")
def single(tmp_path_factory, mnist_root):
    out = tmp_path_factory.mktemp("single")
    train(out, 2)
    return load_checkpoint(out / "checkpoint.pt")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, mnist_root):
    out = tmp_path_factory.mktemp("ddp")
    result = train(out, 2, processes=2)
    return out, result


def test_two_processes_follow_the_single_process_trajectory(single, two_processes):
    out, _ = two_processes
    ddp = load_checkpoint(out / "checkpoint.pt")
    assert ddp.epoch == single.epoch == 2
    assert_same_model(ddp, single)


def test_only_rank_0_writes_and_prints(two_processes):
    out, result = two_processes
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2, result.stdout
    assert "training on 2 processes (cpu)" in result.stdout
    assert result.stdout.count("saved ") == 1


def test_a_distributed_run_resumes(tmp_path, single):
    train(tmp_path, 1, processes=2)
    assert load_checkpoint(tmp_path / "checkpoint.pt").epoch == 1
    train(tmp_path, 2, "--resume", processes=2)
    assert_same_model(load_checkpoint(tmp_path / "checkpoint.pt"), single)


def test_the_ranks_shards_make_up_the_single_process_batch():
    images = torch.rand(10, 1, 28, 28)
    labels = torch.arange(10)
    torch.manual_seed(0)
    whole = list(TensorLoader(images, labels, batch_size=4, binarized=True, seed=1))
    shards = []
    for rank in range(2):
        torch.manual_seed(0)  # every rank holds the same RNG state
        shards.append(list(TensorLoader(images, labels, 4, True, True, 1, rank, 2)))
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards, strict=True):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="split evenly over 3 processes"):
        TensorLoader(
            torch.zeros(8, 1, 28, 28), torch.zeros(8), batch_size=128, rank=0, world_size=3
        )


# 32 grey images and a fresh model: the same in the test and in every process it starts
SETUP = """
import torch

from vae_tutorial import VAE, TensorLoader

images = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
torch.manual_seed(0)
model = VAE(4)
"""

# One run_epoch step (SGD) on those images, in one process or as 2 ranks of DDP; saves each
# parameter's gradient (on rank 0, after DDP's average over the ranks).
STEP = (
    SETUP
    + """
import sys

from vae_tutorial.distributed import setup, teardown
from vae_tutorial.epoch import run_epoch
from vae_tutorial.objectives import ELBO

out, free_bits, beta = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
context, device = setup(torch.device("cpu"))
net = torch.nn.parallel.DistributedDataParallel(model) if context.active else model
labels = torch.zeros(len(images))
loader = TensorLoader(images, labels, 32, False, False, 0, context.rank, context.world_size)
torch.manual_seed(1)  # the noise: the same on every rank
optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
run_epoch(net, loader, optimizer, beta, context=context, objective=ELBO(free_bits))
if context.is_main:
    torch.save({name: p.grad for name, p in model.named_parameters()}, out)
teardown(context)
"""
)


def gradients(tmp_path, free_bits=0.0, beta=1.0, processes=1) -> dict:
    """The gradient one ``run_epoch`` step leaves, computed by ``processes`` processes."""
    script = tmp_path / "step.py"
    script.write_text(STEP)
    out = tmp_path / f"grads-{processes}-{free_bits}.pt"
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = [*launcher, str(script), str(out), str(free_bits), str(beta)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


def assert_same_gradients(ddp: dict, single: dict):
    """Equal up to float rounding: the all-reduce adds the two halves of the batch in
    another order than one process does (about 1e-7 relative); a factor of 2, or one
    coordinate's KL gradient added or missing, is far larger."""
    for name, g in single.items():
        scale = g.abs().max().item()
        torch.testing.assert_close(
            ddp[name], g, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_two_ranks_compute_the_single_process_gradient(tmp_path):
    """The loss scaling: DDP averages the ranks' gradients, each of half the batch's sum;
    without ``loss * world_size`` the gradient would be half. (Adam, which ignores a
    constant factor, could not tell; the gradient itself can.)"""
    assert_same_gradients(gradients(tmp_path, processes=2), gradients(tmp_path))


def test_free_bits_under_two_ranks_floor_as_one_process(tmp_path):
    """Free bits floor each coordinate's mean KL over the *global* batch. The floor is put
    between the two halves' means of one coordinate, above the whole batch's mean: one
    process floors that coordinate (no KL gradient), a rank deciding on its half would not."""
    setup = {}
    exec(SETUP, setup)
    with torch.no_grad():
        kl = kl_per_dim(*setup["model"].encoder(setup["images"]))  # (32, 4)
    whole = kl.mean(0)  # (4,)
    halves = torch.stack([kl[0::2].mean(0), kl[1::2].mean(0)])  # (2, 4): each rank's rows
    j = int((halves[0] - halves[1]).abs().argmax())
    free_bits = float((whole[j] + halves[:, j].max()) / 2)
    assert whole[j] < free_bits < halves[:, j].max()
    beta = 10.0  # the KL's share of the gradient, large enough to see one coordinate's part
    single = gradients(tmp_path, free_bits, beta)
    assert_same_gradients(gradients(tmp_path, free_bits, beta, processes=2), single)
