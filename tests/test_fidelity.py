"""Fidelity metrics: agreement and KL(teacher ‖ student) on test."""
from __future__ import annotations

import math

import torch

from kdbench.fidelity import agreement, kl_teacher_student


def test_a_model_agrees_with_itself():
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0))
    assert agreement(logits, logits) == 1.0
    assert abs(kl_teacher_student(logits, logits)) < 1e-6


def test_agreement_counts_matching_top1():
    teacher = torch.eye(4)  # predicts 0, 1, 2, 3
    student = torch.eye(4)[[0, 1, 3, 2]]
    assert agreement(student, teacher) == 0.5


def test_kl_matches_the_definition():
    t, s = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    p, q = t.softmax(-1), s.softmax(-1)
    expected = float((p * (p.log() - q.log())).sum())
    assert math.isclose(kl_teacher_student(t, s), expected, rel_tol=1e-5)
    assert kl_teacher_student(t, s) > 0


def test_quantized_student_is_smaller_and_close_to_the_float_one():
    from torch import nn

    from kdbench.quantize import quantize_linear, state_dict_bytes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    x = torch.randn(128, 64)
    q = quantize_linear(model)
    assert state_dict_bytes(q) < state_dict_bytes(model) / 3  # int8 weights vs float32
    assert agreement(q(x), model(x).detach()) > 0.9
    assert model[0].weight.dtype == torch.float32  # the float student is left as it was
