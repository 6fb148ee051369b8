"""Trace the first optimizer steps of one cell: what happens before a run collapses.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/first_steps.py digits --optimizer sam \
        --rho 0.05 --lr 0.05 --weight-decay 1e-3 --label-noise 0.6 --seed 4 --steps 30

Takes the options of ``python -m benchmarks`` (the cell is built by the engine's own
``Trainer``, so its weights, batches and labels are the cell's exactly) plus
``--steps N`` and prints one line per step:

    lr        the learning rate of the step
    loss      the clean (first-pass) training loss of the batch
    |g|       the norm of the clean gradient
    loss@w+e  the loss at the perturbed weights (sharpness-aware methods)
    |g@w+e|   the norm of the gradient there: what the base optimizer descends along
    |dw|      the norm of the step the weights took
    max|z|    the largest |logit| of the batch
    alive     per ReLU, the fraction of its outputs that are > 0 (first pass)
    minbeta   the smallest BatchNorm shift (bias) of the model

``--summary`` prints one line instead: the peak loss, the lowest alive fraction of
each ReLU over the traced steps, and the mean loss of the last 21 traced steps.
Nothing is written to a runs directory (it trains in a temporary one).
docs/collapse.md explains what these numbers show.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Iterator

import torch

from benchmarks.config import parse_argv
from benchmarks.engine import StopSignals, Trainer, resolve_device
from benchmarks.rundir import RunDir
from benchmarks.tasks import get_task


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([t.detach().norm() for t in tensors])))


def trace(argv: list[str], steps: int) -> Iterator[dict[str, float]]:
    """One dict per step of the cell ``argv`` (``python -m benchmarks`` options)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_argv([*argv, "--runs-dir", tmp, "--progress", "none"])
        task = get_task(cfg.task)
        trainer = Trainer(cfg, task, task.load_data(cfg), resolve_device(cfg.device), RunDir(tmp),
                          StopSignals())
        model, opt, base = trainer.model, trainer.optimizer, trainer.base
        params = list(model.parameters())
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        row: dict[str, float] = {}
        passes: list[tuple[float, float]] = []  # (loss, max |logit|) of each forward of a step
        alive: list[float] = []

        for relu in (m for m in model.modules() if isinstance(m, torch.nn.ReLU)):
            relu.register_forward_hook(lambda m, i, out: alive.append(float((out > 0).float().mean())))
        objective = trainer.step.objective

        def traced_objective(forward, batch):
            outputs = []

            def traced_forward(x: torch.Tensor) -> torch.Tensor:
                outputs.append(forward(x))
                return outputs[-1]

            loss, extras = objective(traced_forward, batch)
            passes.append((float(loss.detach()), float(outputs[-1].detach().abs().max())))
            return loss, extras

        trainer.step.objective = traced_objective
        if opt is not base:  # sharpness-aware: the gradient at w, then at w + e
            first, second = opt.first_step, opt.second_step

            def first_step(*args, **kwargs):
                row["|g|"] = _norm([p.grad for p in params if p.grad is not None])
                return first(*args, **kwargs)

            def second_step(*args, **kwargs):
                row["|g@w+e|"] = _norm([p.grad for p in params if p.grad is not None])
                return second(*args, **kwargs)

            opt.first_step, opt.second_step = first_step, second_step
        else:  # torch's SGD runs the closure inside its step; the gradient outlives it
            base.register_step_post_hook(lambda *_: row.update(
                {"|g|": _norm([p.grad for p in params if p.grad is not None])}))

        step, epoch = 0, 0
        while step < steps:
            for batch in trainer.batches.train_batches(epoch, 0, trainer.steps_per_epoch):
                row.clear(), passes.clear(), alive.clear()
                row["lr"] = base.param_groups[0]["lr"]
                before = [p.detach().clone() for p in params]
                trainer._train_step(batch)
                trainer.scheduler.step()
                num_relus = len(alive) // len(passes)
                row.update(step=step, loss=passes[0][0], **{"max|z|": passes[0][1]})
                if len(passes) > 1:
                    row["loss@w+e"] = passes[1][0]
                row["|dw|"] = _norm([p.detach() - b for p, b in zip(params, before)])
                row["alive"] = alive[:num_relus]
                row["minbeta"] = min(float(bn.bias.detach().min()) for bn in bns) if bns else float("nan")
                yield dict(row)
                step += 1
                if step >= steps:
                    return
            epoch += 1


COLUMNS = ("step", "lr", "loss", "|g|", "loss@w+e", "|g@w+e|", "|dw|", "max|z|", "alive", "minbeta")


def _cell(value: object) -> str:
    if isinstance(value, list):
        return " ".join(f"{a:4.2f}" for a in value)
    if isinstance(value, int):
        return str(value)
    return "" if value is None else f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s TASK [benchmarks options] [--steps N] [--summary]")
    parser.add_argument("--steps", type=int, default=30, help="how many steps to trace")
    parser.add_argument("--summary", action="store_true", help="one line for the whole trace")
    ns, rest = parser.parse_known_args()
    rows = trace(rest, ns.steps)
    if ns.summary:
        rows = list(rows)
        lowest = [min(r["alive"][i] for r in rows) for i in range(len(rows[0]["alive"]))]
        tail = [r["loss"] for r in rows[-21:]]
        print(f"peak loss {max(r['loss'] for r in rows):.3f}  lowest alive "
              f"{' '.join(f'{a:.3f}' for a in lowest)}  last-21 loss {sum(tail) / len(tail):.3f}")
        return
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(_cell(row.get(c)) for c in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
