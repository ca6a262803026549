"""Method `hinton`: soft targets at temperature T (Hinton, Vinyals, Dean 2015, arXiv:1503.02531).

loss = α·CE(student, labels) + (1 − α)·T²·KL(softmax(t/T) ‖ softmax(s/T)).
Defaults T = 4, α = 0.5 (the paper found T in 2.5–4 best for small students).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench import Method, Outputs, hookimpl
from kdbench.losses import soft_kl


class Hinton(Method):
    """Soft targets at temperature T plus hard labels (Hinton et al. 2015)."""

    name = "hinton"
    needs = frozenset({"logits"})
    defaults = {"temperature": 4.0, "alpha": 0.5}

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        return {
            "ce": self.hp.alpha * F.cross_entropy(student.logits, labels),
            "kd": (1.0 - self.hp.alpha) * soft_kl(student.logits, teacher.logits, self.hp.temperature),
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [Hinton]
