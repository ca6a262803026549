"""Method `ofa`: One-for-All KD (Hao et al., NeurIPS 2023, arXiv:2310.19444; Hao840/OFAKD).

Across architecture families, intermediate features live in different spaces, so OFA
does not match features: small learnable branches project chosen student stages into
logit space, where every family agrees, and each branch — and the student's own
logits — learns from the teacher's logits with the target-enhanced loss

    L_ofa(s, t, y) = −Σ_c [(p_t,c + 1[c=y])^ε − 1[c=y]] · log p_s,c,   p = softmax(·/T),

whose exponent ε > 1 strengthens the true class when the teacher is unsure.
loss = ce_weight·CE(student, y) + kd_weight·L_ofa(student logits)
       + branch_weight·Σ_stages L_ofa(branch(stage)).

Defaults: ε = 1.5 (the official README's example; its train.py default is 1.0),
T = 1, all weights 1, stages −4, −3, −2, −1 (the four deepest maps: the four residual
stages of a ResNet, as the paper's stages 1–4; the last four blocks of a ViT).
None of them was tuned here.

Deviations: the branch design is simplified — a branch is k stride-2 depthwise-
separable conv blocks (3×3 depthwise, 1×1 pointwise, BN, ReLU; channels doubling),
k being the number of halvings from the stage's map to the deepest map, then a 1×1
conv to `width` channels (default max of the student's and teacher's last widths, as
in the paper), global average pooling and a linear layer to the classes. The paper
uses SepConv pairs for CNN students and ViT blocks/patch merging for transformer
students; a transformer student's tokens arrive here as maps and get conv branches
too. One ε serves all branches (the paper allows one per stage), and PyTorch's default
initialisation replaces the paper's truncated-normal one. Branches are adapters:
trained with the student, counted apart, not part of the deployed student.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench import Method, Outputs, UsageError, hookimpl


def ofa_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, eps: float,
             temperature: float = 1.0) -> Tensor:
    """OFA's target-enhanced loss, averaged over the batch (see the module docstring)."""
    target = F.one_hot(labels, student_logits.shape[-1]).to(torch.float32)
    p_t = F.softmax(teacher_logits.float() / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    weight = (p_t + target).pow(eps) - target
    return -(weight * log_p_s).sum(-1).mean()


def _sep_conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


def halvings(size: int, target: int) -> int:
    """How many stride-2 (padding 1, kernel 3) convs take `size` down to `target` or below."""
    k = 0
    while size > target:
        size = (size + 1) // 2
        k += 1
    return k


def branch(channels: int, size: int, final_size: int, width: int, num_classes: int) -> nn.Sequential:
    """Stage map (B, channels, size, size) → logits (B, num_classes)."""
    layers: list[nn.Module] = []
    for _ in range(halvings(size, final_size)):
        layers.append(_sep_conv(channels, channels * 2, 2))
        channels *= 2
    layers += [nn.Conv2d(channels, width, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


class OFA(Method):
    """One-for-All KD: stage branches into logit space, target-enhanced loss (Hao et al. 2023)."""

    name = "ofa"
    needs = frozenset({"logits", "features"})
    defaults = {"eps": 1.5, "temperature": 1.0, "stages": (-4, -3, -2, -1), "ce_weight": 1.0,
                "kd_weight": 1.0, "branch_weight": 1.0, "width": 0}
    sources = {
        "eps": "Hao840/OFAKD README's ImageNet example (1.5); its train.py and CIFAR-100 example use 1.0",
        "temperature": "kdbench's choice, not tuned",
        "stages": "Hao et al. 2023: branches on stages 1-4 (here the four deepest maps)",
        "ce_weight": "kdbench's choice, not tuned (OFA-KD adds label smoothing 0.1 to this term)",
        "kd_weight": "kdbench's choice, not tuned",
        "branch_weight": "kdbench's choice, not tuned",
        "width": "0 = the larger of the student's and teacher's last widths, as in Hao et al. 2023",
    }

    def adapters(self, student: Outputs, teacher: Outputs) -> nn.Module:
        feats = student.features or []
        n = len(feats)
        bad = [s for s in self.hp.stages if not -n <= s < n]
        if not feats or bad or not self.hp.stages:
            raise UsageError(f"ofa.stages={list(self.hp.stages)}: the student has {n} feature maps "
                             f"(valid indices {-n}..{n - 1})")
        t_width = teacher.features[-1].shape[1] if teacher is not None and teacher.features else 0
        width = self.hp.width or max(feats[-1].shape[1], t_width)
        final = max(feats[-1].shape[-2:])
        num_classes = student.logits.shape[-1]
        self.branches = nn.ModuleList(
            branch(feats[s].shape[1], max(feats[s].shape[-2:]), final, width, num_classes) for s in self.hp.stages
        )
        return self.branches

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        hp = self.hp
        branch_losses = [
            ofa_loss(head(student.features[s]), teacher.logits, labels, hp.eps, hp.temperature)
            for s, head in zip(hp.stages, self.branches)
        ]
        return {
            "ce": hp.ce_weight * F.cross_entropy(student.logits, labels),
            "kd": hp.kd_weight * ofa_loss(student.logits, teacher.logits, labels, hp.eps, hp.temperature),
            "ofa": hp.branch_weight * torch.stack(branch_losses).sum(),
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [OFA]
