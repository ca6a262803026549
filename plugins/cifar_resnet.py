"""CIFAR-style ResNets (resnet8x4, resnet32x4 of RepDistiller/mdistiller) as timm models.

Three stages of BasicBlocks (widths 64-128-256 after a 32-wide 3×3 stem; the "x4"
variants), depth 6n + 2. Registered with timm's `register_model`, so
`timm.create_model("cifar_resnet32x4", num_classes=100)` works, and they implement
`forward_intermediates` / `forward_head` like timm models, so kdbench taps them alike.
"""
from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, ...] = (32, 64, 128, 256), num_classes: int = 100,
                 in_chans: int = 3, **_: Any) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, w in enumerate(widths[1:]):
            blocks = [BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def forward_intermediates(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats[-1], feats

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_intermediates(x)[0])


@register_model
def cifar_resnet8x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return CifarResNet(8, **kwargs)


@register_model
def cifar_resnet32x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return CifarResNet(32, **kwargs)
