"""The CIFAR fast path's data: :class:`DeviceCIFAR`, uint8 images held on the device,
crop / flip / cutout / normalisation in a few batched kernels
(:mod:`benchmarks.fast.data`). The step it feeds, replayed from a CUDA graph where it
can be, is :class:`benchmarks.training.step.TrainStep`.

``docs/performance.md`` says what each piece buys and how ``make bench`` measures it.
"""

from .data import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, Augmentation,
                   DeviceCIFAR)

__all__ = ["Augmentation", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
           "DeviceCIFAR"]
