"""scikit-learn's bundled handwritten digits: 1797 8x8 grey images, 10 classes.

Real data that needs no download: the suite's embedded default. A fixed stratified
split (1347 train / 450 test, split seed 0, independent of the seed index) keeps the
test set identical across cells. Pixels (0..16) are standardised with the training
set's mean and standard deviation. No augmentation; the tensors live in memory.
"""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..data import IndexedTensors
from .base import Task, TaskData, noisy_labels

NUM_TEST = 450
SPLIT_SEED = 0


class DigitsTask(Task):
    name = "digits"

    def load_data(self, cfg: TrainConfig) -> TaskData:
        # Imported here: scikit-learn takes seconds to import, and every cell of every
        # task imports this module (a 160-cell laptop sweep would pay it 160 times).
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            images, labels, test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED)
        x_train = torch.tensor(x_train, dtype=torch.float32).view(-1, 1, 8, 8)
        x_test = torch.tensor(x_test, dtype=torch.float32).view(-1, 1, 8, 8)
        mean, std = x_train.mean(), x_train.std()
        y_train, record = noisy_labels(cfg, torch.tensor(y_train), num_classes=10)
        return TaskData(
            train=IndexedTensors((x_train - mean) / std, y_train),
            test=IndexedTensors((x_test - mean) / std, torch.tensor(y_test, dtype=torch.int64)),
            num_classes=10, in_memory=True, record=record)
