"""The CIFAR fast path: data held and augmented on the device, and a training step
captured in one CUDA graph (or compiled), with an eager fallback.

* :mod:`benchmarks.fast.data`: :class:`DeviceCIFAR`, uint8 images on the device,
  crop / flip / cutout / normalisation in a few batched kernels.
* :mod:`benchmarks.fast.step`: :class:`TrainStep`, one call per training step
  (both passes of SAM / VaSSO, the restore, the base step, the LR read from a
  device tensor), replayed from a CUDA graph where capture is possible.

``docs/performance.md`` says what each piece buys and how ``make bench`` measures it.
"""

from .data import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, Augmentation,
                   DeviceCIFAR)
from .step import StepOutput, TrainStep, capture_blockers, set_lr, use_tensor_lr

__all__ = ["Augmentation", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
           "DeviceCIFAR", "StepOutput", "TrainStep", "capture_blockers", "set_lr",
           "use_tensor_lr"]
