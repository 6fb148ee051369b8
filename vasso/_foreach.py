"""Whole-model reductions and masks built from ``torch._foreach_*`` kernels.

Every function here dispatches a fixed number of operations, whatever the number
of tensors in its lists: on a GPU a sharpness-aware step is launch-bound when it
loops over tensors in Python (one kernel per tensor per operation), and a fixed
op count is what lets the step be captured in one CUDA graph. Nothing here reads
a value back to the host.

All tensors are expected on one device (the stacked per-tensor norms are).
"""

from __future__ import annotations

import torch
from torch import Tensor


def global_norm(*tensor_lists: list[Tensor]) -> Tensor:
    """``sqrt(sum over every tensor of every list of ||t||^2)``, a 0-d tensor.

    One L2 norm over all the tensors together (not a mean or a sum of per-tensor
    norms), in the widest dtype of the inputs. Empty lists are skipped.
    """
    norms = [n for tensors in tensor_lists if tensors for n in torch._foreach_norm(tensors)]
    if not norms:
        raise ValueError("global_norm() needs at least one tensor")
    return torch.linalg.vector_norm(torch.stack(norms))


def dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """The inner product ``sum_i <a_i, b_i>`` over two matching tensor lists, a 0-d tensor.

    There is no fused sum, so the sum of the elementwise products x is taken as
    ``||max(x, 0)||_1 - ||min(x, 0)||_1``: a fused L1 norm of each half.
    """
    products = torch._foreach_mul(a, b)
    positive = torch._foreach_clamp_min(products, 0.0)
    negative = torch._foreach_clamp_max(products, 0.0)
    return torch.stack(torch._foreach_norm(positive, 1)).sum() - torch.stack(
        torch._foreach_norm(negative, 1)
    ).sum()


def nonfinite_flag(tensors: list[Tensor]) -> Tensor:
    """A 0-d float32 tensor on the tensors' device: 1.0 if any element is inf or nan, else 0.0.

    Uses the same kernel as ``torch.amp.GradScaler`` (with an inverse scale of 1),
    so "overflow" means here exactly what it means to the scaler.
    """
    device = tensors[0].device
    found = torch.zeros((), dtype=torch.float32, device=device)
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    one = torch.ones((), dtype=torch.float32, device=device)
    for group in by_dtype.values():
        torch._amp_foreach_non_finite_check_and_unscale_(group, found, one)
    return found


def zero_nonfinite_(tensors: list[Tensor]) -> None:
    """Replace inf and nan by 0 in place, so that masked arithmetic stays exact.

    A mask ``x * keep`` cannot discard a nan (``nan * 0`` is nan) and there is no
    fused ``where``; this is the one per-tensor loop of the package, and it runs
    only on the fp16 GradScaler path.
    """
    for t in tensors:
        torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)


def select_(dest: list[Tensor], candidate: list[Tensor], discard: Tensor) -> None:
    """``dest = discard ? dest : candidate`` in place, without reading ``discard`` on the host.

    ``discard`` is a 0-d tensor holding exactly 0.0 or 1.0 and every value is
    finite, so ``dest * discard + candidate * (1 - discard)`` returns one of the
    two operands bit for bit.
    """
    keep = 1.0 - discard
    torch._foreach_mul_(dest, discard)
    torch._foreach_add_(dest, torch._foreach_mul(candidate, keep))
