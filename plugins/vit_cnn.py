"""Pair `vit-cnn`: a small timm Vision Transformer teacher → the `resnet-cnn` student.

The cross-architecture track: the student (its spec, builder and training schedule)
is exactly `resnet-cnn`'s (a shallow, narrow timm ResNet, 78 k), so one table
compares a CNN teacher and a ViT teacher for the same student. The teacher is timm's
ViT sized for 28×28 grey images: width 128, 6 blocks of 4 heads, MLP ratio 2, over a
7×7 grid of 49 tokens, classified from the average of its tokens rather than a class
token (after 400 steps, a width-96 4-block version scored 78.0% on validation against
75.1% with a class token) — 0.83 M parameters, 80 MFLOPs per image.

Its tokens come from timm's `ConvStem` inside a `HybridEmbed` — two 3×3 stride-2
conv-BN-ReLU layers (32, 64 wide) and a 1×1 projection to 128 — instead of a patch-4
linear patchify: the "early convolutions" of Xiao et al. 2021 ("Early convolutions help
transformers see better"), which make a ViT train faster and better at a near-identical
cost (+25 k parameters, about 1.3 M more multiply-adds per image). With the same 24-epoch
recipe (46 minutes on 2 idle cores) the conv-stem ViT reaches 91.86% validation, 91.20%
test; the patch-4 ViT reached 90.14% / 90.63%, and its variants that 2 cores could still
train in 60 minutes (≤ 28 epochs; lr 2e-3 with 5% warm-up at batch 256, or ±3 px shifts)
stayed at or below 90.88% validation. Taps: the ViT blocks' 7×7 token maps and the ResNet
stages as NCHW maps through timm's `forward_intermediates` (see `kdbench.taps.timm_outputs`).

The `quick` and `standard` profiles use the shipped teacher (`teachers/vit-cnn/`,
`kdbench teachers train --pairs vit-cnn --recipe zoo`); `smoke` trains its teacher for a
few steps.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from timm.models.vision_transformer_hybrid import ConvStem, HybridEmbed
from torch import nn

from kdbench import hookimpl

from .resnet_cnn import TEACHERS, VISION_SCHEDULES, ResNetCNN, timm_model

#: timm's ViT-Tiny recipe, shrunk for 28×28 inputs (every field overrides the named model's);
#: `conv_stem` names the arguments of timm's `ConvStem` that replaces the patchify layer.
VIT_TEACHER = {"model_name": "vit_tiny_patch16_224", "img_size": 28, "patch_size": 1, "embed_dim": 128,
               "depth": 6, "num_heads": 4, "mlp_ratio": 2.0, "class_token": False, "global_pool": "avg",
               "conv_stem": {"channels": [32, 64, 128], "kernel_size": [3, 3, 1], "stride": [2, 2, 1]}}


def vit_model(spec: dict[str, Any], num_classes: int) -> nn.Module:
    """A timm ViT from `spec`; with `conv_stem`, timm's hybrid embedding over a `ConvStem`."""
    spec = dict(spec)
    stem = spec.pop("conv_stem", None)
    if stem is not None:
        backbone = ConvStem(in_chans=1, depth=len(stem["channels"]), channels=tuple(stem["channels"]),
                            kernel_size=tuple(stem["kernel_size"]), stride=tuple(stem["stride"]))
        spec["embed_layer"] = partial(HybridEmbed, backbone=backbone, proj=False)
    return timm_model(spec, num_classes)


class ViTCNN(ResNetCNN):
    """Fashion-MNIST, timm ViT (conv stem, 6 blocks, 0.83 M) teacher → shallow narrow ResNet (78 k) student."""

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
