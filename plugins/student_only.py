"""Method `student-only`: the baseline every table needs — hard labels, no teacher."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench import Method, Outputs, hookimpl


class StudentOnly(Method):
    """Cross-entropy on the labels alone; the teacher is never run."""

    name = "student-only"
    needs = frozenset({"logits"})
    uses_teacher = False
    baseline = 0  # the reference of every report: what does distillation add to plain training?

    def loss(self, student: Outputs, teacher: Outputs | None, labels: Tensor) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student.logits, labels)}


@hookimpl
def kdbench_methods() -> list[type]:
    return [StudentOnly]
