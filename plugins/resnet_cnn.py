"""Pair `resnet-cnn`: a timm ResNet-18 teacher → a shallow, narrow timm ResNet student on Fashion-MNIST.

Both are timm `resnet18` models (BasicBlock) with a one-channel stem. The teacher has
layers 2-2-2-2 and stage widths 32-64-128-256 (2.8 M params, 18.5 MFLOPs per image); the
student one block per stage (layers 1-1-1-1) and widths 16-32-64-128 (0.32 M params,
3.8 MFLOPs). The student used to be the teacher's depth at a quarter of its width
(8-16-32-64, 0.18 M): at batch 1 a forward pass of such small models costs about the same
per layer whatever its width, so it was barely faster than the teacher there (and than
`vit-cnn`'s ViT: 1.1–1.3×). Half the layers is what makes it faster at batch 1 as well.
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
STUDENT = {"model_name": "resnet18", "channels": (16, 32, 64, 128), "layers": (1, 1, 1, 1)}


def timm_model(spec: dict[str, Any], num_classes: int) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k != "model_name"}
    return timm.create_model(spec["model_name"], pretrained=False, num_classes=num_classes, in_chans=1, **kwargs)


VISION_SCHEDULES = {
    "smoke": Schedule(steps=8, teacher_steps=16, batch_size=32, train_limit=1024, eval_limit=256,
                      extra={"latency_batch": 32}),
    "quick": Schedule(steps=100, teacher_steps=200, batch_size=128, eval_limit=5000, lr=2e-3, teacher_lr=2e-3),
    "standard": Schedule(steps=300, teacher_steps=800, batch_size=128, lr=2e-3, teacher_lr=2e-3),
    "paper": Schedule(steps=20000, teacher_steps=40000, batch_size=128, lr=2e-3, teacher_lr=2e-3),
}


class ResNetCNN(Pair):
    """Fashion-MNIST, timm ResNet-18 (2.8 M) teacher → shallow narrow ResNet (1-1-1-1, 0.32 M) student."""

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
