"""Method `fitnet`: a learned regressor, spatial alignment by pooling, MSE plus CE."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdbench import Outputs, UsageError
from kdbench.taps import outputs
from kdbench_plugins.fitnet import FitNet, align
from kdbench_plugins.vit_cnn import ViTCNN


def test_align_pools_the_larger_map_down_to_the_smaller():
    s, t = torch.randn(2, 16, 4, 4), torch.randn(2, 96, 7, 7)
    a, b = align(s, t)
    assert a is s and b.shape == (2, 96, 4, 4)
    assert torch.allclose(b, F.adaptive_avg_pool2d(t, 4))
    c, d = align(torch.randn(2, 8, 6, 6), torch.randn(2, 8, 3, 3))
    assert c.shape == d.shape == (2, 8, 3, 3)


def test_fitnet_hint_is_mse_between_regressed_student_and_pooled_teacher():
    torch.manual_seed(0)
    s = Outputs(logits=torch.randn(3, 10), features=[torch.randn(3, 8, 7, 7), torch.randn(3, 16, 4, 4)])
    t = Outputs(logits=torch.randn(3, 10), features=[torch.randn(3, 96, 7, 7), torch.randn(3, 96, 7, 7)])
    labels = torch.tensor([1, 2, 3])
    method = FitNet(student_stage="-1", teacher_stage="0", weight="2.0")
    regressor = method.adapters(s, t)
    assert tuple(regressor.weight.shape) == (96, 16, 3, 3)
    terms = method.loss(s, t, labels)
    guided = regressor(s.features[-1])  # (3, 96, 4, 4)
    hint = F.adaptive_avg_pool2d(t.features[0], (4, 4))
    expected = 2.0 * ((guided - hint) ** 2).mean()
    assert torch.allclose(terms["hint"], expected)
    assert torch.allclose(terms["ce"], F.cross_entropy(s.logits, labels))


def test_fitnet_default_matches_the_middle_of_resnet_and_vit():
    torch.manual_seed(0)
    pair = ViTCNN()
    teacher = pair.build_teacher(10).eval()
    student = pair.build_student(teacher, 10)
    needs = frozenset({"logits", "features"})
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        t_out = outputs(teacher, x, needs)
    s_out = outputs(student, x, needs)
    method = FitNet()
    regressor = method.adapters(s_out.detach(), t_out)
    assert (regressor.in_channels, regressor.out_channels) == (16, 128)  # ResNet layer2 → ViT block 4 of 6
    terms = method.loss(s_out, t_out, torch.tensor([0, 1, 2, 3]))
    sum(terms.values()).backward()
    assert regressor.weight.grad is not None and student.layer2[0].conv1.weight.grad is not None
    assert student.layer4[0].conv1.weight.grad is not None  # through CE


def test_fitnet_refuses_a_stage_the_teacher_does_not_have():
    s = Outputs(logits=torch.zeros(2, 3), features=[torch.zeros(2, 4, 2, 2)] * 5)
    t = Outputs(logits=torch.zeros(2, 3), features=[torch.zeros(2, 4, 2, 2)] * 4)
    with pytest.raises(UsageError, match="teacher has 4 feature maps"):
        FitNet(teacher_stage="-5").adapters(s, t)
