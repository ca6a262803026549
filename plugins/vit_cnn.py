"""Pair `vit-cnn`: a small timm Vision Transformer teacher → the `resnet-cnn` student.

The cross-architecture track: the student (its spec, builder and training schedule)
is exactly `resnet-cnn`'s (a shallow, narrow timm ResNet, 78 k), so one table
compares a CNN teacher and a ViT teacher for the same student. The teacher is timm's
ViT sized for 28×28 grey images: patch 4 (a 7×7 grid of 49 patch tokens), width 128,
6 blocks of 4 heads, MLP ratio 2 — 0.80 M parameters, 77 MFLOPs per image. It
classifies from the average of its patch tokens, not a class token (after 400 steps,
batch 128, lr 2e-3, seed 0, a width-96 4-block version scored 78.0% on validation
against 75.1% with a class token). It used to be that width-96, 4-block ViT (0.31 M,
29 MFLOPs), trained for under one epoch: weaker than the student trained alone, and
at batch 1 barely slower than it (1.1–1.3×); the deeper teacher is both a better
model once trained and clearly slower than the student at batch 1.

The `quick` and `standard` profiles use the shipped teacher (`teachers/vit-cnn/`,
`kdbench teachers train --pairs vit-cnn --recipe zoo`: 24 epochs, 45 minutes on 2 idle
cores; validation 90.14%, test 90.63%, still rising slowly at the end). Recipe variants
that 2 CPU cores could still train in 60 minutes (≤ 28 epochs) did not reach 91% on
validation either (trained on a lent H200 in fp32, the same command with `--device cuda`):
the shipped recipe 90.56%; 28 epochs, lr 2e-3, 5% warm-up, batch 256 90.88% (test 90.54%);
28 epochs, 5% warm-up, ±3 px shifts 90.24%. Taps: ViT blocks and ResNet stages as NCHW maps through timm's
`forward_intermediates` (see `kdbench.taps.timm_outputs`).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import timm
from timm.models.vision_transformer_hybrid import ConvStem, HybridEmbed
from torch import nn

from kdbench import hookimpl

from .resnet_cnn import TEACHERS, VISION_SCHEDULES, ResNetCNN

#: timm's ViT-Tiny recipe, shrunk for 28×28 inputs (every field overrides the named model's);
#: `conv_stem` names the arguments of timm's `ConvStem` that replaces the patchify layer.
VIT_TEACHER = {"model_name": "vit_tiny_patch16_224", "img_size": 28, "patch_size": 1, "embed_dim": 128,
               "depth": 6, "num_heads": 4, "mlp_ratio": 2.0, "class_token": False, "global_pool": "avg",
               "conv_stem": {"channels": [32, 64, 128], "kernel_size": [3, 3, 1], "stride": [2, 2, 1]}}


def vit_model(spec: dict[str, Any], num_classes: int) -> nn.Module:
    """A timm ViT from `spec`; with `conv_stem`, timm's hybrid embedding over a `ConvStem`."""
    kwargs = {k: v for k, v in spec.items() if k not in ("model_name", "conv_stem")}
    stem = spec.get("conv_stem")
    if stem is not None:
        backbone = ConvStem(in_chans=1, depth=len(stem["channels"]), channels=tuple(stem["channels"]),
                            kernel_size=tuple(stem["kernel_size"]), stride=tuple(stem["stride"]))
        kwargs["embed_layer"] = partial(HybridEmbed, backbone=backbone, proj=False)
    return timm.create_model(spec["model_name"], pretrained=False, num_classes=num_classes, in_chans=1, **kwargs)


class ViTCNN(ResNetCNN):
    """Fashion-MNIST, timm ViT (patch 4, 6 blocks, 0.80 M) teacher → shallow narrow ResNet (78 k) student."""

    name = "vit-cnn"
    teacher_spec = VIT_TEACHER
    schedules = VISION_SCHEDULES  # the student trains exactly as in resnet-cnn
    shipped_teacher_dir = TEACHERS / "vit-cnn"

    def zoo_recipe(self) -> dict[str, Any]:
        """The shipped teacher's recipe (see `kdbench.shipped`)."""
        return {"model": "timm-" + self.teacher_spec["model_name"], "spec": self.teacher_spec,
                "dataset": self.dataset, "epochs": 24, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.05,
                "label_smoothing": 0.1, "augment": "shift2-flip", "store": "fp32"}

    def build_teacher(self, num_classes: int) -> nn.Module:
        return vit_model(self.teacher_spec, num_classes)


@hookimpl
def kdbench_pairs() -> list[type]:
    return [ViTCNN]
