"""A CUDA training step that is one CUDA-graph replay.

On a GPU this small model's step is a few hundred tiny kernels, and launching them from
Python takes longer than running them. A CUDA graph records the kernels of one step once
and replays them with a single launch. One replay of :class:`GraphedStep` does all of::

    idx = order[step * B : (step + 1) * B]      gather (B,) indices of this epoch's order
    x ~ Bernoulli(images[idx])                  dynamic binarization (graph-safe CUDA RNG)
    logits, mu, logvar = model(x)               eps ~ N(0, I) drawn inside, as eagerly
    loss = sum_b recon_b + beta * kl_b          the ELBO objective, beta and free bits
    loss.backward(); Adam step                  fused, capturable Adam, lr a 0-d tensor
    total += loss; first_bad = step if loss is not finite and none was before; step += 1

Everything a replay reads or writes lives at a fixed address: the images, this epoch's
order, the step counter, ``beta``, ``lr``, the parameters, Adam's state, the loss sum
and ``first_bad``. Between replays only their *values* change, in place (``copy_``,
``fill_``), never the tensors: the learning-rate schedule fills ``lr``
(:func:`~vae_tutorial.optim.set_lr`), a KL warm-up fills ``beta`` before each step.

Same numbers as the eager step. Eagerly, a step draws ``bernoulli`` then ``randn`` from
the CUDA generator; a replay advances the generator's Philox offset by exactly what its
captured kernels consume, in the same order, so from the same RNG state the two draw the
same random numbers. The warm-up that must precede a capture (a few steps on a side
stream) would change the model, Adam's state and the RNG: all three are saved before and
put back in place after the capture (Adam's fresh state is zeros, and a resumed run's is
the loaded one). The last, smaller batch of an epoch cannot be replayed with static
shapes; it is trained by :func:`~vae_tutorial.epoch.run_epoch`, eagerly, on the same
model and optimizer. So graphed and eager training agree up to float rounding.

Why a manual ``torch.cuda.CUDAGraph`` and not ``torch.compile(mode="reduce-overhead")``:
no compile step (tens of seconds, and it needs Triton), it works on any torch >= 2.2 with
CUDA, the whole step (data, loss, optimizer and bookkeeping included) becomes one launch,
and torch.compile was measured slower than eager on this project's CPU. On an H100
(torch 2.11, batch 128, ``python -m vae_tutorial.bench --device cuda --compile``):
eager 32,000 images/s, torch.compile 48,000, this graph 197,000, the blog's loop 8,200.
A replay takes 0.63 ms, about the 0.57 ms its kernels add up to when profiled eagerly:
what is left is the GPU running its many small kernels, not launching them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .data import TensorLoader
from .distributed import SINGLE, Context
from .epoch import CHECK_EVERY, EpochProgress, check_finite, progress_bar, run_epoch
from .objectives import ELBO

WARMUP_STEPS = 3  # eager steps before the capture (cuDNN, cuBLAS and Adam set themselves up)


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class _Snapshot:
    """The RNG state, the parameters and the optimizer's state, to put back in place."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.device = next(model.parameters()).device
        self.rng = _rng_state(self.device)
        self.params = [p.detach().clone() for p in model.parameters()]
        self.state = {
            p: {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
            for p, s in optimizer.state.items()
        }

    @torch.no_grad()
    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Copy the saved values back into the same tensors; Adam state that did not
        exist then (made by the warm-up) becomes zeros, which is Adam's fresh state."""
        for p, saved in zip(model.parameters(), self.params, strict=True):
            p.copy_(saved)
        for p, state in optimizer.state.items():
            before = self.state.get(p, {})
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key in before:
                    value.copy_(before[key])
                else:
                    value.zero_()
        _set_rng_state(self.rng, self.device)


def _addresses(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, ...]:
    """Where the parameters, Adam's state and a tensor ``lr`` live: a graph is only valid
    while these stay where it was captured."""
    tensors = list(model.parameters())
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    tensors += [g["lr"] for g in optimizer.param_groups if torch.is_tensor(g["lr"])]
    return tuple(t.data_ptr() for t in tensors)


class GraphedStep:
    """One training step of ``model`` on ``loader``'s images, captured once as a CUDA graph.

    ``optimizer`` must be capturable (``make_optimizer(model, lr, capturable=True)``).
    ``capture=False`` runs the same step eagerly instead (warm-up and restore included), on
    any device: how the tests check this class's logic on a machine without CUDA.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loader: TensorLoader,
        optimizer: torch.optim.Optimizer,
        objective: ELBO | None = None,
        capture: bool = True,
        warmup: int = WARMUP_STEPS,
    ):
        device = next(model.parameters()).device
        if capture and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the model is on {device}")
        groups = optimizer.param_groups
        if capture and not all(g.get("capturable") and torch.is_tensor(g["lr"]) for g in groups):
            raise ValueError(
                "a CUDA graph needs a capturable optimizer whose lr is a tensor (a float lr would "
                "be fixed in the graph): make_optimizer(model, lr, capturable=True)"
            )
        if loader.images.device != device:
            raise ValueError(f"the images are on {loader.images.device}, the model on {device}")
        if loader.world_size != 1 or loader.num_images < loader.batch_size:
            raise ValueError("a graphed step needs one process and at least one full batch")
        self.model, self.loader, self.optimizer = model, loader, optimizer
        self.objective = objective or ELBO()
        if not isinstance(self.objective, ELBO):
            raise ValueError("the CUDA-graph step trains the ELBO; train other objectives eagerly")
        self.device, self.batch_size, self.binarized = device, loader.batch_size, loader.binarized
        self.full_steps = loader.num_images // loader.batch_size  # the last, smaller batch: eager
        self.images, self.labels = loader.images, loader.labels.to(device)  # (N, 1, 28, 28), (N,)
        # the graph's inputs and outputs: fixed tensors, whose values change in place
        self.order = loader.order().to(device)  # (N,): this epoch's order of the images
        self.offsets = torch.arange(self.batch_size, device=device)  # (B,)
        self.step = torch.zeros((), dtype=torch.long, device=device)  # step in the epoch
        self.beta = torch.ones((), device=device)  # the KL weight
        self.total = torch.zeros((), device=device)  # summed loss of the epoch's replays
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.replay = self._capture(warmup) if capture else self._capture_nothing(warmup)
        self.addresses = _addresses(model, optimizer)  # after the warm-up made Adam's state

    def _step(self) -> None:
        """The step itself: what the graph holds. No host read anywhere (a capture cannot)."""
        positions = self.step * self.batch_size + self.offsets  # (B,)
        idx = self.order.index_select(0, positions)  # (B,)
        x = self.images.index_select(0, idx)  # (B, 1, 28, 28)
        if self.binarized:
            x = torch.bernoulli(x)  # as TensorLoader does, before eps is drawn
        y = self.labels.index_select(0, idx)  # (B,): used if the model is conditional
        loss = self.objective(self.model, x, y, None, self.beta)  # (): batch sum
        loss.backward()
        self.optimizer.step()
        self.total.add_(loss.detach())
        ok = torch.isfinite(loss) | (self.first_bad >= 0)
        self.first_bad.copy_(torch.where(ok, self.first_bad, self.step))
        self.step.add_(1)

    def _warm_up(self, steps: int) -> None:
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            self.step.zero_()  # always the first batch: every index stays in range
            self._step()

    def _capture(self, warmup: int) -> Callable[[], None]:
        """PyTorch's whole-network capture recipe (CUDA semantics notes, "CUDA Graphs"):
        warm up on a side stream, set the grads to None, capture; then undo the warm-up."""
        saved = _Snapshot(self.model, self.optimizer)
        self.model.train()
        try:
            with torch.cuda.device(self.device):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self._warm_up(warmup)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph
                with torch.cuda.graph(graph):
                    self._step()
        finally:
            saved.restore(self.model, self.optimizer)
        self.graph = graph
        self.grads = [p.grad for p in self.model.parameters()]  # the graph writes these: keep them
        return graph.replay

    def _capture_nothing(self, warmup: int) -> Callable[[], None]:
        """``capture=False``: the same warm-up and restore, then the step run eagerly."""
        saved = _Snapshot(self.model, self.optimizer)
        self.model.train()
        try:
            self._warm_up(warmup)
        finally:
            saved.restore(self.model, self.optimizer)

        def replay() -> None:
            self.optimizer.zero_grad(set_to_none=True)  # a replay overwrites the grads
            self._step()

        return replay

    def serves(self, model, loader, optimizer, objective: ELBO) -> bool:
        """True if this graph trains exactly these objects, whose tensors have not moved."""
        return (
            model is self.model
            and loader is self.loader
            and optimizer is self.optimizer
            and objective == self.objective
            and loader.images is self.images
            and (loader.batch_size, loader.binarized) == (self.batch_size, self.binarized)
            and _addresses(model, optimizer) == self.addresses
        )

    def run_epoch(
        self,
        beta: float | Callable[[int], float] = 1.0,
        progress: bool = False,
        desc: str = "train",
        start: EpochProgress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EpochProgress:
        """The epoch's full batches from ``start.step`` on, one replay each, checked and
        stopped as :func:`~vae_tutorial.epoch.run_epoch` does; not the last, smaller one."""
        self.model.train()
        done = start or EpochProgress()
        self.order.copy_(self.loader.order())  # once per epoch; in place: the graph reads it
        self.step.fill_(done.step)
        self.total.zero_()
        self.first_bad.fill_(-1)
        if not callable(beta):
            self.beta.fill_(beta)
        step, stopped = done.step, False
        todo = max(self.full_steps - step, 0)
        for _ in progress_bar(range(todo), todo, desc, progress):
            if callable(beta):  # KL warm-up: this step's weight
                self.beta.fill_(beta(step))
            self.replay()
            step += 1
            asked = should_stop is not None and should_stop()
            if step % CHECK_EVERY == 0:
                check_finite(self.first_bad, self.total)
            if asked:
                stopped = True
                break
        check_finite(self.first_bad, self.total)
        images = (step - done.step) * self.batch_size
        loss_sum = float(self.total.double())
        return EpochProgress(step, done.loss_sum + loss_sum, done.images + images, stopped)


class GraphedEpochs:
    """:func:`~vae_tutorial.epoch.run_epoch` with the same arguments and result, its
    full batches trained by :class:`GraphedStep` replays (captured at the first call, and
    again only if the model, loader, optimizer, the objective or their tensors changed);
    the last, smaller batch by ``run_epoch`` itself.

    It needs a :class:`~vae_tutorial.data.TensorLoader` and one process (``ValueError``
    otherwise); a loader without one full batch is trained by ``run_epoch`` alone.
    ``capture=False``: see :class:`GraphedStep`.
    """

    def __init__(self, capture: bool = True):
        self.capture = capture
        self.graphed: GraphedStep | None = None

    def __call__(
        self,
        model: torch.nn.Module,
        loader: TensorLoader,
        optimizer: torch.optim.Optimizer,
        beta: float | Callable[[int], float] = 1.0,
        progress: bool = False,
        desc: str = "train",
        start: EpochProgress | None = None,
        should_stop: Callable[[], bool] | None = None,
        context: Context = SINGLE,
        objective: ELBO | None = None,
    ) -> EpochProgress:
        if context.active or not isinstance(loader, TensorLoader) or loader.world_size != 1:
            raise ValueError("the CUDA-graph step needs a TensorLoader in one process")
        objective = objective or ELBO()
        eager = (beta, progress, desc, start, should_stop, context, objective)
        if loader.num_images < loader.batch_size:
            return run_epoch(model, loader, optimizer, *eager)
        if self.graphed is None or not self.graphed.serves(model, loader, optimizer, objective):
            self.graphed = None  # the old graph's memory goes before the new one is captured
            self.graphed = GraphedStep(model, loader, optimizer, objective, self.capture)
        done = self.graphed.run_epoch(beta, progress, desc, start, should_stop)
        if done.stopped or done.step >= len(loader):
            return done
        tail = (beta, False, desc, done, should_stop, context, objective)
        return run_epoch(model, loader, optimizer, *tail)  # the last, smaller batch
