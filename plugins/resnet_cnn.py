"""Pair `resnet-cnn`: a timm ResNet-18 teacher → a shallow, narrow timm ResNet student on Fashion-MNIST.

Both are timm `resnet18` models (BasicBlock) with a one-channel stem. The teacher has
layers 2-2-2-2, stage widths 32-64-128-256 and timm's default stem (a 64-wide 7×7 conv and
max pool): 2.8 M params, 18.5 MFLOPs per image. The student has one block per stage,
widths 8-16-32-64 and timm's "deep" stem of 3×3 convs 4 and 8 wide: 78 k params,
0.64 MFLOPs. The stem decides a small model's speed on a CPU: timm's default stem is 64
wide whatever the stage widths, and at 28×28 it cost a 0.32 M student (widths 16-128)
three quarters of its forward pass, leaving it 1.5× faster than the teacher at batch
256; with the narrow deep stem this student is 5–8× faster at batch 1 and at batch 256
(one thread, side by side, on a shared machine). The width was chosen on validation
(student-only, 10 epochs, seed 0): the 0.32 M student reached 91.0%, too close to the
teacher (93.3%) for distillation to have much to transfer; widths 8-64 reach 89.1%.
A 20 k student (widths 4-32) needs twice the budget: 3 seeds, validation 87.31% at 10
epochs, 88.44% at 20 and 88.85% at 40 (test 88.80%), so this student stays.
Taps: stage maps through timm's `forward_intermediates`.

The `quick` and `standard` profiles use the shipped teacher (`teachers/resnet-cnn/`,
`kdbench teachers train --pairs resnet-cnn --recipe zoo`): trained with random ±2 px
shifts and horizontal flips of its own training batches (students see un-augmented
images, so the teacher's logits stay cacheable); `smoke` trains a tiny teacher.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from kdbench import Pair, Schedule, hookimpl

from .fashion_mnist import augment

TEACHERS = Path(__file__).resolve().parent / "teachers"
TEACHER = {"model_name": "resnet18", "channels": (32, 64, 128, 256)}
STUDENT = {"model_name": "resnet18", "channels": (8, 16, 32, 64), "layers": (1, 1, 1, 1), "stem_type": "deep",
           "stem_width": 4}


def timm_model(spec: dict[str, Any], num_classes: int) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k != "model_name"}
    return timm.create_model(spec["model_name"], pretrained=False, num_classes=num_classes, in_chans=1, **kwargs)


#: `standard`: 8600 steps of 128 = 20 epochs, the budget at which more training stopped
#: helping `student-only` (validation, 3 seeds, each budget its own cosine schedule):
#: 87.74% at 5 epochs, 88.97% at 10, 89.19% at 20 (+0.22 < 0.5; +1.23 from 5 to 10).
VISION_SCHEDULES = {
    "smoke": Schedule(steps=8, teacher_steps=16, batch_size=32, train_limit=1024, eval_limit=256,
                      extra={"latency_batch": 32}),
    "quick": Schedule(steps=100, teacher_steps=200, batch_size=128, eval_limit=5000, lr=2e-3, teacher_lr=2e-3),
    "standard": Schedule(steps=8600, teacher_steps=800, batch_size=128, lr=2e-3, teacher_lr=2e-3),
    "paper": Schedule(steps=20000, teacher_steps=40000, batch_size=128, lr=2e-3, teacher_lr=2e-3),
}


class ResNetCNN(Pair):
    """Fashion-MNIST, timm ResNet-18 (2.8 M) teacher → shallow narrow ResNet (1-1-1-1, 78 k) student."""

    name = "resnet-cnn"
    dataset = "fashion-mnist"
    taps = frozenset({"logits", "features"})
    schedules = VISION_SCHEDULES
    teacher_spec = TEACHER
    student_spec = STUDENT
    shipped_teacher_dir = TEACHERS / "resnet-cnn"

    def zoo_recipe(self) -> dict[str, Any]:
        """The shipped teacher's recipe (see `kdbench.shipped`)."""
        return {"model": "timm-" + self.teacher_spec["model_name"], "spec": self.teacher_spec,
                "dataset": self.dataset, "epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05,
                "label_smoothing": 0.1, "augment": "shift2-flip", "store": "fp32"}

    def augment_teacher_batch(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return augment(x, name)

    def teacher_recipe(self, profile: str) -> dict[str, Any]:
        s = self.schedule(profile)
        return {"model": "timm-" + self.teacher_spec["model_name"], "spec": self.teacher_spec,
                "dataset": self.dataset, "profile": profile, "steps": s.teacher_steps, "lr": s.teacher_lr,
                "batch_size": s.batch_size, "train_limit": s.train_limit}

    def build_teacher(self, num_classes: int) -> nn.Module:
        return timm_model(self.teacher_spec, num_classes)

    def build_student(self, teacher: nn.Module, num_classes: int) -> nn.Module:
        return timm_model(self.student_spec, num_classes)


@hookimpl
def kdbench_pairs() -> list[type]:
    return [ResNetCNN]
