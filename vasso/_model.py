"""What the optimizer needs to know about the model: its BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningStats:
    """Saves and restores the running statistics of every BatchNorm-like layer of a model.

    The second (perturbed) forward pass of a sharpness-aware step runs at w + e;
    under the default policy its batch statistics must not leak into the running
    mean and variance used at evaluation. Saving the buffers before the second
    pass and copying them back after it is exact for every momentum setting
    (including ``momentum=None``, the cumulative average) and also undoes the
    ``num_batches_tracked`` increment. The copies go into buffers allocated once.

    Buffers are looked up from the modules on every call, because ``model.to()``
    replaces buffer tensors (it keeps parameters, not buffers).
    """

    def __init__(self, model: nn.Module) -> None:
        self._layers = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
        ]
        self._saved: dict[torch.dtype, list[Tensor]] = {}

    def __bool__(self) -> bool:
        return bool(self._layers)

    def _buffers(self) -> dict[torch.dtype, list[Tensor]]:
        """The buffers, one list per dtype: a fused (foreach) copy needs one dtype per
        list, and on CUDA falls back to one kernel per tensor otherwise (float32
        statistics and int64 ``num_batches_tracked`` would give 3 kernels per layer)."""
        names = ("running_mean", "running_var", "num_batches_tracked")
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for m in self._layers:
            for name in names:
                buf = getattr(m, name)
                if buf is not None:
                    by_dtype.setdefault(buf.dtype, []).append(buf)
        return by_dtype

    @torch.no_grad()
    def save(self) -> None:
        buffers = self._buffers()
        if _layout(self._saved) != _layout(buffers):
            self._saved = {dtype: [torch.empty_like(b) for b in group]
                           for dtype, group in buffers.items()}
        for dtype, group in buffers.items():
            torch._foreach_copy_(self._saved[dtype], group)

    @torch.no_grad()
    def restore(self) -> None:
        for dtype, group in self._buffers().items():
            torch._foreach_copy_(group, self._saved[dtype])


def _layout(buffers: dict[torch.dtype, list[Tensor]]) -> list:
    return [(dtype, [(b.shape, b.device) for b in group]) for dtype, group in buffers.items()]
