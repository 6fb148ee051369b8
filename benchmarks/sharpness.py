"""Sharpness of a trained model: the largest Hessian eigenvalue and the Hessian trace.

The Hessian is that of the mean training loss over a fixed list of batches (a
fixed training subset), with the model in evaluation mode, so BatchNorm uses its
running statistics and dropout is off: the loss is then one deterministic
function of the weights, and its Hessian is what the numbers describe.

Nothing here forms the Hessian. ``HessianOperator`` applies it to a vector by
double backward (a Hessian-vector product costs about two backward passes per
batch); ``top_eigenvalue`` runs Lanczos on it and ``hutchinson_trace`` averages
Rademacher quadratic forms. Both report what they achieved (converged or not,
the residual, the standard error) instead of a bare number.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


class HessianOperator:
    """v -> H v for the Hessian H of the mean loss over ``batches`` w.r.t. the trainable
    parameters of ``model`` (flattened into one vector, in ``model.parameters()`` order).

    ``loss_fn(output, target)`` must return the *mean* loss of a batch; batches are
    weighted by their size, so the operator is the Hessian of the per-sample mean
    over all of them.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 batches: Sequence[Batch]) -> None:
        if not batches:
            raise ValueError("HessianOperator needs at least one batch")
        self.model, self.loss_fn, self.batches = model, loss_fn, list(batches)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.dim = sum(p.numel() for p in self.params)
        self.num_samples = sum(len(y) for _, y in self.batches)
        self.products = 0  # Hessian-vector products computed, for the record

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    def _split(self, v: Tensor) -> list[Tensor]:
        return [chunk.view_as(p) for chunk, p in zip(v.split([p.numel() for p in self.params]), self.params)]

    def __call__(self, v: Tensor) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            pieces = self._split(v)
            total = torch.zeros_like(v)
            for x, y in self.batches:
                with torch.enable_grad():
                    loss = self.loss_fn(self.model(x), y)
                    grads = torch.autograd.grad(loss, self.params, create_graph=True)
                    hv = torch.autograd.grad(grads, self.params, grad_outputs=pieces)
                total += torch.cat([h.reshape(-1) for h in hv]) * (len(y) / self.num_samples)
        finally:
            self.model.train(was_training)
        self.products += 1
        return total.detach()


@dataclass
class Eigenvalue:
    """The result of :func:`top_eigenvalue`. ``converged``: the residual bound
    ||H y - value y|| <= tol |value| was met within ``max_iter`` Lanczos steps;
    when it was not, ``value`` is the last estimate and must be reported as such."""

    value: float
    converged: bool
    iterations: int
    residual: float  # ||H y - value y|| for the unit Ritz vector y (Lanczos' bound)
    tol: float

    def __str__(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        return (f"{self.value:.6g} ({state}: residual {self.residual:.2e} after "
                f"{self.iterations} Lanczos steps, tolerance {self.tol:g} relative)")


def top_eigenvalue(operator: Callable[[Tensor], Tensor], dim: int, *, max_iter: int = 100,
                   tol: float = 1e-4, seed: int = 0, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> Eigenvalue:
    """The largest (algebraic) eigenvalue of the symmetric ``operator`` on R^dim.

    Lanczos with full reorthogonalisation, from a seeded random start. After each
    step the largest Ritz value theta of the tridiagonal matrix T_k and its
    eigenvector s give the residual ||H y - theta y|| = |beta_k s_k| exactly
    (in exact arithmetic), so convergence is checked without an extra product.
    Krylov vectors are kept (``max_iter`` vectors of ``dim`` numbers).
    """
    if max_iter < 1 or tol <= 0:
        raise ValueError(f"need max_iter >= 1 and tol > 0, got max_iter={max_iter}, tol={tol}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    q /= q.norm()
    basis: list[Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    value, residual = math.nan, math.inf
    for k in range(1, max_iter + 1):
        basis.append(q)
        w = operator(q)
        alphas.append(float(torch.dot(w, q)))
        # Full reorthogonalisation (twice is enough): keeps the Ritz values free of ghosts.
        for _ in range(2):
            for b in basis:
                w = w - torch.dot(w, b) * b
        beta = float(w.norm())
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if k > 1:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        value = float(evals[-1])
        residual = abs(beta * float(evecs[-1, -1]))
        if residual <= tol * max(abs(value), 1e-30) or k == dim or beta < 1e-12 * max(abs(value), 1.0):
            return Eigenvalue(value, True, k, residual, tol)
        betas.append(beta)
        q = w / beta
    return Eigenvalue(value, False, max_iter, residual, tol)


@dataclass
class Trace:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over Rademacher v."""

    value: float
    stderr: float
    samples: int

    def __str__(self) -> str:
        return f"{self.value:.6g} +- {self.stderr:.2g} (standard error, {self.samples} Rademacher samples)"


def hutchinson_trace(operator: Callable[[Tensor], Tensor], dim: int, *, samples: int = 100,
                     seed: int = 0, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> Trace:
    if samples < 2:
        raise ValueError(f"need at least 2 samples for a standard error, got {samples}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    quads = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        quads.append(float(torch.dot(v, operator(v))))
    values = torch.tensor(quads, dtype=torch.float64)
    return Trace(float(values.mean()), float(values.std() / math.sqrt(samples)), samples)


def model_sharpness(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                    batches: Sequence[Batch], *, max_iter: int = 100, tol: float = 1e-4,
                    trace_samples: int = 0, seed: int = 0) -> dict:
    """The top eigenvalue (and, with ``trace_samples``, the trace) of a model's Hessian,
    as a JSON-ready record that states the tolerance, convergence and cost."""
    op = HessianOperator(model, loss_fn, batches)
    kw = dict(device=op.device, dtype=op.dtype)
    eig = top_eigenvalue(op, op.dim, max_iter=max_iter, tol=tol, seed=seed, **kw)
    record = {"top_eigenvalue": eig.value, "converged": eig.converged,
              "lanczos_steps": eig.iterations, "residual": eig.residual, "tol": tol,
              "num_samples": op.num_samples, "num_params": op.dim}
    if trace_samples:
        trace = hutchinson_trace(op, op.dim, samples=trace_samples, seed=seed + 1, **kw)
        record.update(trace=trace.value, trace_stderr=trace.stderr, trace_samples=trace.samples)
    record["hessian_vector_products"] = op.products
    return record


# -- python -m benchmarks.sharpness RUN_DIR -------------------------------------------

def run_sharpness(run: Any, samples: int, batch_size: int, max_iter: int, tol: float,
                  trace_samples: int, epoch: int | None = None) -> dict[str, Any]:
    """``model_sharpness`` of a run's final weights (or those after ``epoch``) on a fixed
    training subset (benchmarks.trained.TrainedRun.fixed_subset), with where it came from."""
    chosen = run.weights[-1] if epoch is None else next((w for w in run.weights if w.epoch == epoch), None)
    if chosen is None:
        have = ", ".join(str(w.epoch) for w in run.weights)
        raise ValueError(f"{run.path} has no weights after epoch {epoch} (it has: {have})")
    record = model_sharpness(run.model(chosen), run.loss_fn, run.fixed_subset(samples, batch_size),
                             max_iter=max_iter, tol=tol, trace_samples=trace_samples)
    return {"run_dir": str(run.path), "epoch": chosen.epoch, "step": chosen.step,
            "source": str(chosen.source), **record}


def describe(record: dict[str, Any]) -> str:
    """One line that never hides a missed tolerance."""
    state = "converged" if record["converged"] else "NOT converged, last estimate"
    text = (f"top Hessian eigenvalue {record['top_eigenvalue']:.6g} ({state}: residual "
            f"{record['residual']:.2e} after {record['lanczos_steps']} Lanczos steps, tolerance "
            f"{record['tol']:g} relative; {record['num_samples']} training samples, BatchNorm in eval mode)")
    if "trace" in record:
        text += f"; Hessian trace {record['trace']:.6g} ± {record['trace_stderr']:.2g} (standard error)"
    return text


def main(argv: list[str] | None = None) -> int:
    from .rundir import atomic_write_json
    from .trained import NoWeights, open_run, run_parser

    parser = run_parser("python -m benchmarks.sharpness", (
        "The largest Hessian eigenvalue (Lanczos) of a run's final model, optionally the trace "
        "(Hutchinson), on a fixed training subset with BatchNorm in evaluation mode."))
    parser.add_argument("--epoch", type=int, default=None,
                        help="the weights after this epoch (a snapshot) instead of the last ones")
    parser.add_argument("--samples", type=int, default=1000,
                        help="training samples, drawn once with seed 0 (default 1000)")
    parser.add_argument("--batch-size", type=int, default=250, help="batch of the Hessian-vector products")
    parser.add_argument("--max-iter", type=int, default=100, help="Lanczos steps at most (default 100)")
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="converged when ||H y - lambda y|| <= tol |lambda| (default 1e-4)")
    parser.add_argument("--trace-samples", type=int, default=0,
                        help="Rademacher samples for the Hutchinson trace (default 0: no trace)")
    args = parser.parse_args(argv)
    try:
        if args.samples < 1 or args.batch_size < 1:
            raise ValueError(f"need --samples and --batch-size >= 1, got {args.samples}, {args.batch_size}")
        run = open_run(args.run_dir, args.device)
        record = run_sharpness(run, args.samples, args.batch_size, args.max_iter, args.tol,
                               args.trace_samples, args.epoch)
    except (NoWeights, ValueError) as err:
        print(f"python -m benchmarks.sharpness: error: {err}", file=sys.stderr)
        return 2
    for line in run.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{run.path} after epoch {record['epoch']}: {describe(record)}")
    if args.json is not None:
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")
    if not record["converged"]:
        print(f"python -m benchmarks.sharpness: the eigenvalue did not converge in {args.max_iter} "
              "Lanczos steps (the value above is the last estimate); raise --max-iter", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
