"""Fidelity: how closely a student matches its teacher, apart from how accurate it is.

Stanton et al. (NeurIPS 2021, "Does knowledge distillation really work?") show that a
student's accuracy and its fidelity to the teacher can move apart, so records keep
both: top-1 agreement and the mean KL(teacher ‖ student) at temperature 1, on test.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def agreement(student_logits: Tensor, teacher_logits: Tensor) -> float:
    """Fraction of examples where student and teacher predict the same class."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logits shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    return float((student_logits.argmax(-1) == teacher_logits.argmax(-1).to(student_logits.device)).float().mean())


def kl_teacher_student(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> float:
    """Mean over examples of KL(p_teacher ‖ p_student), softmax at `temperature`, in nats."""
    t = F.log_softmax(teacher_logits.float().to(student_logits.device) / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return float(F.kl_div(s, t, log_target=True, reduction="batchmean"))
