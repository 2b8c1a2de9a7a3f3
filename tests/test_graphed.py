"""The CUDA-graph training step (vae_tutorial.graphed).

On the CPU: the step's logic, run eagerly (``capture=False``: same gather, same order of
random draws, same warm-up and restore, same tail and checks), against ``run_epoch``;
the choice between graphed and eager training; the CLI switch; optimizer states that
move between a capturable optimizer (tensor ``lr``) and an ordinary one.
On CUDA (skipped elsewhere): real graphs against the eager step, through ``fit``.
"""

import copy
import functools

import pytest
import torch

import vae_tutorial.training as training
from vae_tutorial import (
    TensorLoader,
    TrainConfig,
    fit,
    fixed_binarized,
    load_checkpoint,
    mnist_tensors,
)
from vae_tutorial.checkpoint import load_optimizer_state, portable_optimizer_state
from vae_tutorial.cvae import ConditionalVAE
from vae_tutorial.distributed import SINGLE, Context
from vae_tutorial.epoch import NonFiniteLossError, run_epoch
from vae_tutorial.graphed import GraphedEpochs, GraphedStep
from vae_tutorial.model import VAE
from vae_tutorial.objectives import ELBO
from vae_tutorial.optim import make_optimizer, set_lr
from vae_tutorial.training import TrainingInterrupted, use_cuda_graph

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: CUDA graphs exist only on a CUDA device"
)

# ---------------------------------------------------------------- on the CPU: the logic


def synthetic_loader(n=600, batch_size=64, seed=1):
    """600 random grey images and labels: 9 full batches of 64, then one of 24."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return TensorLoader(images, labels, batch_size, binarized=True, seed=seed)


def warmup(epoch, step, steps=10):
    """A KL weight that grows with every step, as ``TrainConfig.kl_weight`` makes it."""
    return min(1.0, 0.05 * (epoch * steps + step + 1))


def train_cpu(runner, conditional=False, epochs=2, lr=1e-3, stop_at=None):
    """``epochs`` epochs of ``runner`` (run_epoch or GraphedEpochs) from seed 0, with a
    schedule for lr and (conditional runs) a KL warm-up and free bits; optionally
    stopped after ``stop_at`` steps of the first epoch and resumed from there."""
    torch.manual_seed(0)
    model = ConditionalVAE(4) if conditional else VAE(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = synthetic_loader()
    free_bits = 0.1 if conditional else 0.0
    results = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        set_lr(optimizer, lr / (epoch + 1))
        beta = functools.partial(warmup, epoch) if conditional else 1.0
        args = (model, loader, optimizer, beta)
        if stop_at is not None and epoch == 0:
            asked = iter([False] * (stop_at - 1) + [True])
            done = runner(
                *args, should_stop=functools.partial(next, asked), objective=ELBO(free_bits)
            )
            assert done.stopped and done.step == stop_at
            done = runner(*args, start=done, objective=ELBO(free_bits))
        else:
            done = runner(*args, objective=ELBO(free_bits))
        results.append(done)
    return model, results


def assert_equal_runs(a, b):
    (model_a, done_a), (model_b, done_b) = a, b
    for (key, value), other in zip(
        model_a.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), key
    assert [(d.step, d.images, d.stopped) for d in done_a] == [
        (d.step, d.images, d.stopped) for d in done_b
    ]
    # the graphed path adds its last batch's loss in float64, run_epoch all in float32
    for d, e in zip(done_a, done_b, strict=True):
        assert d.loss_sum == pytest.approx(e.loss_sum, rel=1e-6)


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "cvae-warmup-freebits"])
def test_the_graphed_step_computes_what_run_epoch_computes(conditional):
    # bit for bit on the CPU: the same batches, the same random numbers in the same order,
    # a warm-up that leaves no trace, the last smaller batch trained too
    eager = train_cpu(run_epoch, conditional)
    graphed = train_cpu(GraphedEpochs(capture=False), conditional)
    assert eager[1][0].step == 10 and eager[1][0].images == 600
    assert_equal_runs(graphed, eager)


@pytest.mark.parametrize("stop_at", [4, 9], ids=["mid-epoch", "before-the-last-batch"])
def test_a_stopped_graphed_epoch_resumes_to_the_same_weights(stop_at):
    uninterrupted = train_cpu(GraphedEpochs(capture=False))
    assert_equal_runs(train_cpu(GraphedEpochs(capture=False), stop_at=stop_at), uninterrupted)
    assert_equal_runs(train_cpu(run_epoch, stop_at=stop_at), uninterrupted)


def test_a_non_finite_loss_names_the_same_step_as_run_epoch():
    steps = []
    for runner in (run_epoch, GraphedEpochs(capture=False)):
        with pytest.raises(NonFiniteLossError) as info:
            train_cpu(runner, lr=1e6)  # the first update throws the weights far out
        steps.append(info.value.step)
    assert steps[0] == steps[1] and 0 < steps[0] < 9, steps  # within the graphed batches


def test_the_warm_up_leaves_model_optimizer_and_rng_as_they_were():
    torch.manual_seed(0)
    model, loader = VAE(4), synthetic_loader()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    run_epoch(model, loader, optimizer)  # Adam has state now: the warm-up must restore it
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in optimizer.state[next(model.parameters())].items()}
    rng = torch.get_rng_state()
    GraphedStep(model, loader, optimizer, capture=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    now = optimizer.state[next(model.parameters())]
    assert all(torch.equal(v, now[k]) for k, v in state.items())
    assert torch.equal(rng, torch.get_rng_state())


def test_graphed_epochs_retraces_when_its_tensors_move():
    torch.manual_seed(0)
    model, loader = VAE(4), synthetic_loader()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    runner = GraphedEpochs(capture=False)
    runner(model, loader, optimizer)
    first = runner.graphed
    runner(model, loader, optimizer)
    assert runner.graphed is first, "the same objects: the graph is reused"
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # new state tensors
    runner(model, loader, optimizer)
    assert runner.graphed is not first, "Adam's state moved: captured again"


def test_graphed_epochs_refuses_what_it_cannot_graph():
    model = VAE(4)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        GraphedStep(model, synthetic_loader(), optimizer)
    with pytest.raises(ValueError, match="TensorLoader in one process"):
        GraphedEpochs(capture=False)(model, [(torch.rand(2, 1, 28, 28), None)], optimizer)
    with pytest.raises(ValueError, match="TensorLoader in one process"):
        GraphedEpochs(capture=False)(model, synthetic_loader(), optimizer, context=Context(0, 2))
    with pytest.raises(ValueError, match="capturable optimizer is for CUDA graphs"):
        make_optimizer(model, 1e-3, capturable=True)


def test_a_loader_without_a_full_batch_is_trained_eagerly():
    small = synthetic_loader(n=50, batch_size=64)
    results = []
    for runner in (run_epoch, GraphedEpochs(capture=False)):
        torch.manual_seed(0)
        model = VAE(4)
        done = runner(model, small, torch.optim.Adam(model.parameters()))
        results.append((model, [done]))
    assert_equal_runs(*results)


# ---------------------------------------------------------------- on the CPU: the switch


def test_when_fit_uses_cuda_graphs():
    cpu, tensor, torchvision = torch.device("cpu"), TrainConfig(), TrainConfig(loader="torchvision")
    two = Context(rank=0, world_size=2)
    assert use_cuda_graph(None, CUDA, tensor, SINGLE) and use_cuda_graph(True, CUDA, tensor)
    assert not use_cuda_graph(False, CUDA, tensor)
    assert not use_cuda_graph(None, cpu, tensor) and not use_cuda_graph(False, cpu, tensor)
    # documented fallbacks: the blog's DataLoader path, and several processes
    assert not use_cuda_graph(True, CUDA, torchvision) and not use_cuda_graph(
        True, CUDA, tensor, two
    )
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        use_cuda_graph(True, cpu, tensor)


def test_fit_with_graphed_true_on_the_cpu_says_why_it_cannot():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device.*graphed=None"):
        fit(TrainConfig(epochs=1, train_size=128), "cpu", graphed=True, progress=False)


def test_cli_no_graph_switches_to_the_eager_step(tmp_path, monkeypatch):
    from vae_tutorial import cli

    calls = []
    monkeypatch.setattr(cli, "fit", lambda *args, **kwargs: calls.append(kwargs))
    for extra in ([], ["--no-graph"]):
        out = tmp_path / str(len(calls))
        assert cli.main(["train", "--device", "cpu", "--out", str(out), *extra]) == 0
    assert [c["graphed"] for c in calls] == [None, False]


# ------------------------------------------------ on the CPU: optimizer states, both ways


def capturable_like(model, lr=0.01):
    """The graphed optimizer as far as a CPU has it: a tensor lr, capturable (not stepped)."""
    return torch.optim.Adam(model.parameters(), lr=torch.tensor(lr), capturable=True)


def stepped_eager(model, lr=0.02):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model(torch.rand(3, 1, 28, 28))[0].sum().backward()
    optimizer.step()
    return optimizer


def test_set_lr_fills_a_tensor_lr_in_place():
    model = VAE(2)
    optimizer = capturable_like(model)
    lr = optimizer.param_groups[0]["lr"]
    set_lr(optimizer, 0.5)
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == 0.5
    eager = torch.optim.Adam(model.parameters(), lr=0.1)
    set_lr(eager, 0.25)
    assert eager.param_groups[0]["lr"] == 0.25


def test_an_eager_state_loads_into_the_graphed_optimizer():
    model = VAE(2)
    saved = stepped_eager(model).state_dict()
    target = capturable_like(model)
    lr = target.param_groups[0]["lr"]
    load_optimizer_state(target, saved)
    group = target.param_groups[0]
    assert group["lr"] is lr and float(lr) == pytest.approx(0.02), "the graph's tensor, refilled"
    assert group["capturable"], "it stays capturable"
    step = target.state[next(model.parameters())]["step"]
    assert step.dtype == torch.float32 and float(step) == 1.0


def test_a_graphed_state_saves_as_an_ordinary_one_and_loads_into_eager_adam():
    model = VAE(2)
    source = capturable_like(model, lr=0.03)
    load_optimizer_state(source, stepped_eager(model).state_dict())
    set_lr(source, 0.03)
    saved = portable_optimizer_state(source)
    group = saved["param_groups"][0]
    assert type(group["lr"]) is float and group["lr"] == pytest.approx(0.03)
    assert group["capturable"] is False
    assert torch.is_tensor(source.param_groups[0]["lr"]), "the live optimizer is left alone"
    eager = torch.optim.Adam(model.parameters(), lr=1.0)
    load_optimizer_state(eager, saved)
    assert eager.param_groups[0]["lr"] == pytest.approx(0.03)
    assert not eager.param_groups[0]["capturable"] and not eager.param_groups[0]["fused"]
    model(torch.rand(3, 1, 28, 28))[0].sum().backward()
    eager.step()  # an ordinary CPU Adam: would fail if it had become capturable
    assert float(eager.state[next(model.parameters())]["step"]) == 2.0
    torch.optim.Adam(model.parameters()).load_state_dict(saved)  # plain torch loads it too


# ---------------------------------------------------------------- on CUDA: real graphs
#
# Two CUDA runs of the same step are not bit-identical: cuDNN's weight gradients add with
# atomics in no fixed order (~1e-7 relative), and training amplifies that. Measured on an
# H100 (torch 2.11) for the runs below, between two identical uninterrupted runs and
# between eager, graphed and resumed ones alike: the first epoch's training loss agrees to
# 1e-6 relative, the second epoch's losses and test -ELBO to 1.3e-4, reconstructions to
# 4e-3 per pixel probability; the largest single weight gap reaches 4e-2 = 0.33 lr * steps
# (Adam divides each gradient by its running root mean square, so a gradient that is all
# but zero becomes a full step whose sign is the rounding noise). Real faults are far
# larger, measured the same way: other random numbers (the warm-up's RNG draws left in,
# planted on purpose) move the first epoch's loss by 2e-3 and reconstructions by 6e-2; a
# schedule that does not reach the graph moves the second epoch's losses by 2e-2 and
# reconstructions by 0.19.

SMALL = dict(train_size=30 * 128 + 96, seed=3)  # 30 graphed steps, then a batch of 96
COSINE = TrainConfig(epochs=2, lr=2e-3, lr_schedule="cosine", **SMALL)


def cuda_fit(config, graphed, **kwargs):
    return fit(config, CUDA, progress=False, verbose=False, graphed=graphed, **kwargs)


def relative(x: float, y: float) -> float:
    return abs(x - y) / abs(y)


def differences(a, b) -> dict[str, float]:
    """How far two trained ``(model, history)`` pairs are apart: the first epoch's training
    loss (relative), the worst of every later loss and test -ELBO (relative), the largest
    weight gap, and the largest gap of a pixel probability over 256 reconstructed digits."""
    (model_a, history_a), (model_b, history_b) = a, b
    values = [history_a[k] for k in ("train_loss", "test_neg_elbo")]
    others = [history_b[k] for k in ("train_loss", "test_neg_elbo")]
    later = [
        relative(x, y)
        for xs, ys in zip(values, others, strict=True)
        for x, y in zip(xs, ys, strict=False)
    ]
    params = zip(model_a.parameters(), model_b.parameters(), strict=True)
    images, labels = mnist_tensors(False, device=CUDA)
    digits, labels = fixed_binarized(images[:256]), labels[:256]
    given = (labels,) if model_a.conditional else ()
    pixels = model_a.reconstruct(digits, *given) - model_b.reconstruct(digits, *given)
    return {
        "first": relative(history_a["train_loss"][0], history_b["train_loss"][0]),
        "later": max(later),
        "weights": max((x - y).abs().max().item() for x, y in params),
        "pixels": pixels.abs().max().item(),
    }


def assert_same_training(a, b, lr, steps, what=""):
    """``a`` and ``b`` followed one trajectory, up to the float noise measured above; the
    bounds leave a factor of 3 to 10 over that noise."""
    gaps = differences(a, b)
    print(f"{what}: {gaps}")
    assert gaps["first"] < 1e-5, gaps
    assert gaps["later"] < 1e-3, gaps
    assert gaps["weights"] < lr * steps, gaps  # a sanity bound: see above
    assert gaps["pixels"] < 2e-2, gaps


def stopped_run(config, graphed, path, after, resume=False):
    """Train until Ctrl-C is (as if) pressed after ``after`` steps; return the checkpoint."""
    asked = {"n": 0}

    def press_ctrl_c(self):
        asked["n"] += 1
        return asked["n"] == after

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training._StopOnInterrupt, "__call__", press_ctrl_c)
        with pytest.raises(TrainingInterrupted):
            cuda_fit(config, graphed, checkpoint=path, resume=resume)
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def cosine_runs(mnist_root):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: CUDA graphs exist only on a CUDA device")
    return {graphed: cuda_fit(COSINE, graphed) for graphed in (False, True)}


@needs_cuda
def test_cuda_graphed_training_follows_the_eager_trajectory(cosine_runs):
    assert_same_training(cosine_runs[True], cosine_runs[False], 2e-3, 62, "eager vs graphed")


@needs_cuda
def test_cuda_the_lr_schedule_reaches_the_graph(cosine_runs):
    # the same run at constant lr: epoch 2 at lr 2e-3 instead of 1e-3. If the graph kept
    # the lr it was captured with, the cosine run would be this one.
    constant = cuda_fit(TrainConfig(epochs=2, lr=2e-3, **SMALL), True)
    print(f"constant vs cosine lr: {differences(constant, cosine_runs[True])}")
    with pytest.raises(AssertionError):
        assert_same_training(constant, cosine_runs[True], 2e-3, 62)


@needs_cuda
def test_cuda_conditional_warmup_and_free_bits_follow_the_eager_trajectory(mnist_root):
    config = TrainConfig(epochs=1, conditional=True, kl_warmup=1, beta=2.0, free_bits=0.1, **SMALL)
    runs = {graphed: cuda_fit(config, graphed) for graphed in (False, True)}
    assert_same_training(runs[True], runs[False], 1e-3, 31, "conditional, eager vs graphed")


@needs_cuda
def test_cuda_a_non_finite_loss_names_the_same_step(mnist_root):
    steps = []
    for graphed in (False, True):
        with pytest.raises(NonFiniteLossError, match="epoch 1, step") as info:
            cuda_fit(TrainConfig(epochs=1, lr=1e6, **SMALL), graphed)
        steps.append(info.value.step)
    assert steps[0] == steps[1] and 0 < steps[0] < 30, steps


@needs_cuda
@pytest.mark.parametrize("resume_graphed", [True, False], ids=["resume-graphed", "resume-eager"])
def test_cuda_stop_mid_epoch_and_resume(tmp_path, cosine_runs, resume_graphed):
    path = tmp_path / "checkpoint.pt"
    state = stopped_run(COSINE, True, path, after=31 + 10)  # epoch 2, after step 10
    assert (state.epoch, state.partial["step"]) == (1, 10)
    group = state.optimizer_state["param_groups"][0]
    assert type(group["lr"]) is float and group["capturable"] is False, "saved as plain Adam"
    # the step after the resume is the one an uninterrupted run takes: the summed loss of
    # steps 0..10 agrees to float noise (measured 2e-7 to 5e-6); one batch of other random
    # numbers in it (the planted fault above) moved the sum by 1.2e-4
    resumed = stopped_run(COSINE, resume_graphed, path, after=1, resume=True).partial
    straight = stopped_run(COSINE, True, tmp_path / "straight.pt", after=31 + 11).partial
    assert resumed["step"] == straight["step"] == 11
    gap = relative(resumed["loss_sum"], straight["loss_sum"])
    print(f"resumed ({resume_graphed=}): next step's loss sum differs by {gap:.1e}")
    assert gap < 5e-5
    # and it ends where an uninterrupted run does
    done = cuda_fit(COSINE, resume_graphed, checkpoint=path, resume=True)
    assert_same_training(done, cosine_runs[True], 2e-3, 62, f"resumed ({resume_graphed=})")
