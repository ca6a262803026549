"""Pair `mlp-hinton`: Hinton et al. 2015's MNIST setup, applied to Fashion-MNIST.

Teacher: 784-1200-1200-10 ReLU MLP with dropout (0.2 on inputs, 0.5 on hidden units).
Student: 784-800-800-10 ReLU MLP without regularisation.

The `quick` and `standard` profiles use the shipped teacher (`teachers/mlp-hinton/`,
trained by `kdbench teachers train --pairs mlp-hinton --recipe zoo`); `smoke` trains a
tiny one. The recipe was chosen on validation accuracy (batch 128, AdamW lr 1e-3,
cosine, seed 0): 20 epochs without label smoothing 89.78%; 60 epochs with label
smoothing 0.1 90.36%; 150 epochs with it 90.50% (the shipped one; still gaining about
0.1 point per 50 epochs at the end). The paper's ±2 px input jitter (augment "shift2",
applied only to the teacher's own batches) was rejected: 87.38% after 20 epochs, still
climbing slowly; on Fashion-MNIST an MLP without convolutions pays for shift invariance
with far more epochs than 60 minutes on two CPU cores allow. Mirroring did not help either
(60 epochs, label smoothing 0.1): `shift0-flip` 90.30%, `shift1-flip` 89.28%, against
90.36% without augmentation. The 2×800 student alone reaches 90.31% test at 20 epochs:
on this dataset both MLPs sit near the same ceiling, so the teacher's margin is small.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench import Pair, Schedule, hookimpl

from .fashion_mnist import augment

TEACHERS = Path(__file__).resolve().parent / "teachers"


def mlp(width: int, num_classes: int, dropout_in: float = 0.0, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Dropout(dropout_in),
        nn.Linear(28 * 28, width), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(width, num_classes),
    )


class MLPHinton(Pair):
    """Fashion-MNIST, 2×1200 dropout MLP teacher → 2×800 MLP student (Hinton et al. 2015)."""

    name = "mlp-hinton"
    dataset = "fashion-mnist"
    taps = frozenset({"logits"})
    #: `standard`: 8600 steps of 128 = 20 epochs, where more training stopped helping
    #: `student-only` (validation, 3 seeds, each budget its own cosine schedule): 89.57% at
    #: 5 epochs, 90.22% at 10, 90.45% at 20 (+0.23 < 0.5).
    schedules = {
        "smoke": Schedule(steps=30, teacher_steps=60, batch_size=64, train_limit=2048, eval_limit=1000),
        "quick": Schedule(steps=400, teacher_steps=1000, batch_size=128),
        "standard": Schedule(steps=8600, teacher_steps=3000, batch_size=128),
        "paper": Schedule(steps=30000, teacher_steps=60000, batch_size=100),
    }

    student_spec = {"model": "mlp", "hidden": (800, 800), "dropout": 0.0}
    shipped_teacher_dir = TEACHERS / "mlp-hinton"
    #: The paper profile (Hinton et al.'s 30,000 student steps) distils from the shipped teacher too.
    shipped_profiles = ("quick", "standard", "paper")

    def zoo_recipe(self) -> dict[str, Any]:
        """The shipped teacher's recipe (see `kdbench.shipped`), chosen on validation."""
        return {"model": "mlp-2x1200-dropout", "dataset": self.dataset, "epochs": 150, "batch_size": 128,
                "lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.1, "augment": None, "store": "fp32"}

    def augment_teacher_batch(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return augment(x, name)

    def teacher_recipe(self, profile: str) -> dict[str, Any]:
        s = self.schedule(profile)
        return {"model": "mlp-2x1200-dropout", "dataset": self.dataset, "profile": profile,
                "steps": s.teacher_steps, "lr": s.teacher_lr, "batch_size": s.batch_size,
                "train_limit": s.train_limit}

    def build_teacher(self, num_classes: int) -> nn.Module:
        return mlp(1200, num_classes, dropout_in=0.2, dropout=0.5)

    def build_student(self, teacher: nn.Module, num_classes: int) -> nn.Module:
        return mlp(self.student_spec["hidden"][0], num_classes, dropout=self.student_spec["dropout"])


@hookimpl
def kdbench_pairs() -> list[type]:
    return [MLPHinton]
