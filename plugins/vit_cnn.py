"""Pair `vit-cnn`: a small timm Vision Transformer teacher → the `resnet-cnn` student.

The cross-architecture track: the student (its spec, builder and training schedule)
is exactly `resnet-cnn`'s, so one table compares a CNN teacher and a ViT teacher for
the same student. The teacher is timm's ViT sized for 28×28 grey images: patch 4
(a 7×7 grid of 49 patch tokens), width 96, 4 blocks of 3 heads, MLP ratio 2 —
0.31 M parameters, about 30 MFLOPs per image (0.45 M and 44 MFLOPs at MLP ratio 4),
chosen so its quick-profile training fits about a minute and a half on two otherwise
idle CPU cores. It classifies from the average of its patch tokens, not a class
token: after 400 steps (batch 128, lr 2e-3, seed 0) that scored 78.0% on validation
against 75.1% with a class token. Trained for under one epoch from scratch without
augmentation, it is much weaker than the CNN teacher — weaker than the student
trained alone at the quick profile — and that is part of what the track shows.
Taps: ViT blocks and ResNet stages as NCHW maps through timm's
`forward_intermediates` (see `kdbench.taps.timm_outputs`).
"""
from __future__ import annotations

from kdbench import hookimpl

from .resnet_cnn import VISION_SCHEDULES, ResNetCNN

#: timm's ViT-Tiny recipe, shrunk for 28×28 inputs (every field overrides the named model's).
VIT_TEACHER = {"model_name": "vit_tiny_patch16_224", "img_size": 28, "patch_size": 4, "embed_dim": 96,
               "depth": 4, "num_heads": 3, "mlp_ratio": 2.0, "class_token": False, "global_pool": "avg"}


class ViTCNN(ResNetCNN):
    """Fashion-MNIST, timm ViT (patch 4, 0.31 M) teacher → narrow ResNet-18 (0.18 M) student."""

    name = "vit-cnn"
    teacher_spec = VIT_TEACHER
    schedules = VISION_SCHEDULES  # the student trains exactly as in resnet-cnn


@hookimpl
def kdbench_pairs() -> list[type]:
    return [ViTCNN]
