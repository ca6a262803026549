"""Pair `resnet-cnn`: a timm ResNet-18 teacher → a 16× smaller ResNet-18 student on Fashion-MNIST.

Both are timm `resnet18` (BasicBlock, layers 2-2-2-2) with a one-channel stem; the
teacher has stage widths 32-64-128-256 (2.8 M params), the student 8-16-32-64 (0.18 M)
— widths chosen so the quick profile trains on two CPU cores. Taps: stage maps
through timm's `forward_intermediates`.
"""
from __future__ import annotations

from typing import Any

import timm
from torch import nn

from kdbench import Pair, Schedule, hookimpl

TEACHER = {"model_name": "resnet18", "channels": (32, 64, 128, 256)}
STUDENT = {"model_name": "resnet18", "channels": (8, 16, 32, 64)}


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
    """Fashion-MNIST, timm ResNet-18 (2.8 M) teacher → narrow ResNet-18 (0.18 M) student."""

    name = "resnet-cnn"
    dataset = "fashion-mnist"
    taps = frozenset({"logits", "features"})
    schedules = VISION_SCHEDULES
    teacher_spec = TEACHER
    student_spec = STUDENT

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
