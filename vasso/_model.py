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
        self._saved: list[Tensor] = []

    def __bool__(self) -> bool:
        return bool(self._layers)

    def _buffers(self) -> list[Tensor]:
        names = ("running_mean", "running_var", "num_batches_tracked")
        return [
            buf for m in self._layers for name in names if (buf := getattr(m, name)) is not None
        ]

    @torch.no_grad()
    def save(self) -> None:
        buffers = self._buffers()
        if not buffers:
            return
        if [(b.shape, b.dtype, b.device) for b in self._saved] != [
            (b.shape, b.dtype, b.device) for b in buffers
        ]:
            self._saved = [torch.empty_like(b) for b in buffers]
        torch._foreach_copy_(self._saved, buffers)

    @torch.no_grad()
    def restore(self) -> None:
        buffers = self._buffers()
        if buffers:
            torch._foreach_copy_(buffers, self._saved)
