"""The paper's mechanism, measured: how far each method's adversary is from the ideal one.

At fixed weights w (a checkpoint of a run), the ideal adversary is
e* = rho g/||g|| with g the gradient of the loss over the whole training set
(or a stated large fixed subset). A sharpness-aware step only sees minibatch
gradients g_1, g_2, ...; SAM perturbs along each one, VaSSO along their moving
average d_t = (1 - theta) d_{t-1} + theta g_t (d_1 = g_1, theta = 1 is SAM):

    e_t = rho d_t / ||d_t||,   distance_t = ||e_t - e*|| / rho,   cos_t = cos(e_t, e*)

Every method sees the same K minibatches at the same weights, so the numbers
differ only by how each one averages. The weights are frozen on purpose: this
isolates the variance of the adversary (the paper's "SAM's adversary is
over-friendly") from the different trajectories the methods would take. The
first ``warmup`` minibatches are not scored, so VaSSO's average has forgotten
its start (its weight on d_1 after n updates is (1 - theta)^n).

For a gradient with per-coordinate noise variance sigma^2 around its mean,
E||d_t - g||^2 (``Alignment.variance``) approaches theta / (2 - theta) of SAM's,
which is what the test of this module checks.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def flat_gradient(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                  batches: Iterable[Batch]) -> Tensor:
    """The gradient of the per-sample mean loss over ``batches`` (batches weighted by size),
    flattened in ``model.parameters()`` order. The model's train/eval mode is the caller's."""
    params = [p for p in model.parameters() if p.requires_grad]
    total, count = None, 0
    for x, y in batches:
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_fn(model(x), y), params)
        flat = torch.cat([g.reshape(-1) for g in grads]).double() * len(y)
        total = flat if total is None else total + flat
        count += len(y)
    if total is None:
        raise ValueError("flat_gradient needs at least one batch")
    return total / count


@dataclass
class Alignment:
    """Per theta (1.0 is SAM): mean and standard deviation of the scored steps."""

    theta: float
    distance_mean: float  # ||e_t - e*|| / rho
    distance_std: float
    cos_mean: float       # cos(e_t, e*)
    cos_std: float
    variance: float       # mean ||d_t - g||^2: the direction's error before normalising
    steps: int


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, math.sqrt(var)


def adversary_alignment(full_gradient: Tensor, minibatch_gradients: Sequence[Tensor],
                        thetas: Sequence[float], warmup: int = 0) -> list[Alignment]:
    """Score SAM's and VaSSO's adversaries against e* (see the module docstring).

    ``minibatch_gradients``: g_1..g_K at the same weights, in order (each flat).
    ``thetas``: the VaSSO weights to score; include 1.0 for SAM. rho cancels out of
    both quantities, so it is not an argument.
    """
    if not 0 <= warmup < len(minibatch_gradients):
        raise ValueError(f"warmup={warmup} leaves no step of the {len(minibatch_gradients)} to score")
    for theta in thetas:
        if not 0 < theta <= 1:
            raise ValueError(f"theta must lie in (0, 1], got {theta}")
    full = full_gradient.double()
    ideal = full / full.norm()
    results = []
    for theta in thetas:
        d, distances, cosines, errors = None, [], [], []
        for t, g in enumerate(minibatch_gradients):
            g = g.double()
            d = g.clone() if d is None else (1 - theta) * d + theta * g
            if t < warmup:
                continue
            e = d / d.norm()
            distances.append(float((e - ideal).norm()))
            cosines.append(float(torch.dot(e, ideal)))
            errors.append(float((d - full).square().sum()))
        dm, ds = _mean_std(distances)
        cm, cs = _mean_std(cosines)
        results.append(Alignment(theta, dm, ds, cm, cs, sum(errors) / len(errors), len(distances)))
    return results


def measure(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
            full_batches: Iterable[Batch], minibatches: Sequence[Batch],
            thetas: Sequence[float], warmup: int) -> list[Alignment]:
    """e* from ``full_batches``, then the K ``minibatches``, all at the model's current
    weights, in training mode (the gradients a training step would see)."""
    was_training = model.training
    model.train()
    # Training-mode forwards update BatchNorm's running statistics: put them back.
    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        full = flat_gradient(model, loss_fn, full_batches)
        grads = [flat_gradient(model, loss_fn, [batch]) for batch in minibatches]
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        model.train(was_training)
    return adversary_alignment(full, grads, thetas, warmup)


# -- python -m benchmarks.diagnose RUN_DIR --------------------------------------------

DEFAULT_THETAS = (1.0, 0.9, 0.4, 0.2, 0.1)


def diagnose_run(run: Any, thetas: Sequence[float], steps: int, warmup: int,
                 subset: int | None) -> list[dict[str, Any]]:
    """Every set of weights of a run (benchmarks.trained.TrainedRun), taken after epoch e:
    e* from the whole training set as the next epoch serves it (or the first ``subset``
    samples of its order), scored over the ``warmup + steps`` minibatches training went
    on with (from that epoch's first); one record per weights and theta."""
    batch = run.cfg.batch_size
    records = []
    for weights in run.weights:
        model = run.model(weights)
        full = run.epoch_batches(weights.epoch, None if subset is None else -(-subset // batch))
        minibatches = run.following_batches(weights.epoch, warmup + steps)
        for found in measure(model, run.loss_fn, full, minibatches, thetas, warmup):
            records.append({"epoch": weights.epoch, "step": weights.step, "source": str(weights.source),
                            "samples": sum(len(y) for _, y in full), **dataclasses.asdict(found)})
    return records


def _thetas(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    from .rundir import atomic_write_json
    from .trained import NoWeights, open_run, run_parser

    parser = run_parser("python -m benchmarks.diagnose", (
        "SAM's and VaSSO's adversaries against the full-gradient one, at every snapshot "
        "(--snapshot-every) and the last checkpoint of a run: ||e_t - e*||/rho and cos(e_t, e*)."))
    parser.add_argument("--thetas", type=_thetas, default=list(DEFAULT_THETAS),
                        help="VaSSO's theta values, comma-separated; 1 is SAM (default: 1,0.9,0.4,0.2,0.1)")
    parser.add_argument("--steps", type=int, default=20, help="minibatches scored (K, default 20)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="minibatches before them, not scored: VaSSO's average forgets its start (default 10)")
    parser.add_argument("--subset", type=int, default=None,
                        help="e* from the first N training samples of the epoch's order "
                        "(default: the whole training set)")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1 or args.warmup < 0:
            raise ValueError(f"need --steps >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
        run = open_run(args.run_dir, args.device)
        records = diagnose_run(run, args.thetas, args.steps, args.warmup, args.subset)
    except (NoWeights, ValueError) as err:
        print(f"python -m benchmarks.diagnose: error: {err}", file=sys.stderr)
        return 2
    for line in run.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{'epoch':>5} {'theta':>5} {'||e-e*||/rho':>14} {'cos(e,e*)':>12}  (mean ± std over "
          f"{args.steps} minibatches; e* from {records[0]['samples']} samples)")
    for r in records:
        print(f"{r['epoch']:>5} {r['theta']:>5g} {r['distance_mean']:>7.3f} ± {r['distance_std']:.3f}"
              f" {r['cos_mean']:>6.3f} ± {r['cos_std']:.3f}")
    if args.json is not None:
        atomic_write_json(args.json, {"run_dir": str(run.path), "steps": args.steps,
                                      "warmup": args.warmup, "records": records})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
