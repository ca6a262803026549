"""Method `dkd`: Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022, arXiv:2203.08679).

The paper rewrites the classical KD loss KL(p_t ‖ p_s) as
    KD = TCKD + (1 − p_t,target) · NCKD
where TCKD is the KL between the binary "target class vs the rest" distributions of
teacher and student, and NCKD the KL between their distributions over the non-target
classes alone (renormalised). The teacher's confidence (1 − p_t,target) suppresses
NCKD exactly where it carries most "dark knowledge"; DKD weighs the two freely:

    loss = ce_weight · CE(student, labels) + ramp · T² · (α · TCKD + β · NCKD)

with both KLs at temperature T. Defaults are the paper's CIFAR-100 settings
(α = 1, β = 8, T = 4, CE weight 1, the DKD part ramped up linearly over the first 20 of
240 epochs). Deviation: the ramp is measured in budget (`self.progress`), not epochs,
so `warmup` = 20/240 of the budget. The paper's ImageNet setting is α = 0.5, β = 0.5, T = 1.
β was tuned for CIFAR-100's 100 classes; tune it on validation for other datasets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench import Method, Outputs, hookimpl


def _binary_and_rest(z: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """log [p_target, 1 − p_target] (B, 2) and log p over non-target classes (B, C; 0 at the target)."""
    log_all = torch.logsumexp(z, dim=-1)
    others = z.masked_fill(target, float("-inf"))
    log_target = (z.masked_fill(~target, 0.0).sum(-1)) - log_all
    log_rest = torch.logsumexp(others, dim=-1) - log_all
    log_nontarget = F.log_softmax(others, dim=-1).masked_fill(target, 0.0)
    return torch.stack([log_target, log_rest], dim=-1), log_nontarget


def dkd_terms(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
              temperature: float) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD), each T²·KL(teacher ‖ student) averaged over the batch."""
    target = F.one_hot(labels, student_logits.shape[-1]).bool()
    b_s, n_s = _binary_and_rest(student_logits.float() / temperature, target)
    b_t, n_t = _binary_and_rest(teacher_logits.float() / temperature, target)
    tckd = (b_t.exp() * (b_t - b_s)).sum(-1).mean()
    nckd = (n_t.exp().masked_fill(target, 0.0) * (n_t - n_s)).sum(-1).mean()
    return tckd * temperature**2, nckd * temperature**2


class DKD(Method):
    """Decoupled KD: target-class and non-target-class KL terms weighted by α and β (Zhao et al. 2022)."""

    name = "dkd"
    needs = frozenset({"logits"})
    defaults = {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0, "warmup": 20 / 240}

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        ramp = min(self.progress / self.hp.warmup, 1.0) if self.hp.warmup > 0 else 1.0
        tckd, nckd = dkd_terms(student.logits, teacher.logits, labels, self.hp.temperature)
        return {
            "ce": self.hp.ce_weight * F.cross_entropy(student.logits, labels),
            "tckd": ramp * self.hp.alpha * tckd,
            "nckd": ramp * self.hp.beta * nckd,
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [DKD]
