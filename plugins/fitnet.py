"""Method `fitnet`: the classic feature hint (Romero et al., ICLR 2015, arXiv:1412.6550).

A learned regressor maps a student stage (the "guided" layer) to the shape of a
teacher stage (the "hint"), and the student learns to match it:

    loss = ce_weight·CE(student, y) + weight·MSE(pool(r(s_guided)), pool(t_hint)),

r a 3×3 convolution from the student's channels to the teacher's, and `pool` an
adaptive average pool that brings the larger of the two maps down to the smaller's
height and width (a ViT's 7×7 token map meets a ResNet's 4×4 stage map, say). It is
the feature baseline of the cross-architecture track: where features of different
families diverge it is expected to help little or hurt (RepDistiller's CIFAR-100
tables put FitNet below the plain student on VGG13 → MobileNetV2).

Defaults: student_stage = teacher_stage = −3 (the middle of a four-stage model: a
ResNet's second residual stage — the paper's middle hint/guided layers; for the
6-block ViT teacher of `vit-cnn`, its fourth block), weight 1 (OFA-KD's own FitNet
baseline; not tuned here), ce_weight 1.

Deviations: one stage of training with CE + hint, as RepDistiller and OFAKD
implement it, instead of the paper's hint pre-training of the lower student followed
by a separate KD stage; the regressor is a plain convolution (no BN/ReLU, so it can
match signed ViT tokens); spatial sizes are aligned by pooling. The regressor is an
adapter: trained with the student, counted apart, not part of the deployed student.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench import Method, Outputs, UsageError, hookimpl


def align(student_map: Tensor, teacher_map: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger map down to the smaller one's height and width."""
    hs, ws = student_map.shape[-2:]
    ht, wt = teacher_map.shape[-2:]
    size = (min(hs, ht), min(ws, wt))
    if (hs, ws) != size:
        student_map = F.adaptive_avg_pool2d(student_map, size)
    if (ht, wt) != size:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return student_map, teacher_map


def _stage(outputs: Outputs, index: int, who: str) -> Tensor:
    feats = outputs.features or []
    n = len(feats)
    if not -n <= index < n:
        raise UsageError(f"fitnet.{who}_stage={index}: the {who} has {n} feature maps "
                         f"(valid indices {-n}..{n - 1})")
    return feats[index]


class FitNet(Method):
    """FitNets hint: a learned regressor maps a student stage onto a teacher stage, MSE + CE."""

    name = "fitnet"
    needs = frozenset({"logits", "features"})
    defaults = {"student_stage": -3, "teacher_stage": -3, "weight": 1.0, "ce_weight": 1.0}
    sources = {
        "student_stage": "Romero et al. 2015: the middle (guided) layer of the student",
        "teacher_stage": "Romero et al. 2015: the middle (hint) layer of the teacher",
        "weight": "OFA-KD's own FitNet baseline uses weight 1 (RepDistiller and mdistiller use 100)",
        "ce_weight": "kdbench's choice: the hard-label cross-entropy at weight 1",
    }

    def adapters(self, student: Outputs, teacher: Outputs) -> nn.Module:
        s = _stage(student, self.hp.student_stage, "student")
        t = _stage(teacher, self.hp.teacher_stage, "teacher")
        self.regressor = nn.Conv2d(s.shape[1], t.shape[1], 3, padding=1)
        return self.regressor

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        guided = self.regressor(student.features[self.hp.student_stage])
        guided, hint = align(guided, teacher.features[self.hp.teacher_stage])
        return {
            "ce": self.hp.ce_weight * F.cross_entropy(student.logits, labels),
            "hint": self.hp.weight * F.mse_loss(guided.float(), hint.float()),
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [FitNet]
