"""Method `ofa`: the target-enhanced loss by hand, and branches that project stages to logits."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdbench import Outputs, UsageError
from kdbench.taps import outputs
from kdbench_plugins.ofa import OFA, halvings, ofa_loss
from kdbench_plugins.resnet_cnn import ResNetCNN
from kdbench_plugins.vit_cnn import ViTCNN

S = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
T = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
Y = [0, 2]


def _softmax(row: list[float], temp: float) -> list[float]:
    e = [math.exp(v / temp) for v in row]
    return [v / sum(e) for v in e]


def _by_hand(s: list[list[float]], t: list[list[float]], y: list[int], eps: float, temp: float) -> float:
    """−Σ_c [(p_t,c + 1[c=y])^ε − 1[c=y]] · log p_s,c, averaged over examples, in plain Python."""
    total = 0.0
    for s_row, t_row, label in zip(s, t, y):
        p_s, p_t = _softmax(s_row, temp), _softmax(t_row, temp)
        for c in range(len(s_row)):
            hit = 1.0 if c == label else 0.0
            total -= ((p_t[c] + hit) ** eps - hit) * math.log(p_s[c])
    return total / len(s)


@pytest.mark.parametrize("eps,temp", [(1.5, 1.0), (1.0, 1.0), (2.0, 4.0)])
def test_ofa_loss_matches_the_hand_computed_value(eps, temp):
    got = ofa_loss(torch.tensor(S), torch.tensor(T), torch.tensor(Y), eps, temp)
    assert got.item() == pytest.approx(_by_hand(S, T, Y, eps, temp), rel=1e-6)


def test_ofa_loss_first_example_by_hand_numbers():
    # p_t = softmax(2,0,0) = (e²/(e²+2), 1/(e²+2), 1/(e²+2)) = (.786986, .106507, .106507)
    # log p_s = (1,0,−1) − log(e + 1 + e⁻¹) = (−0.407606, −1.407606, −2.407606); label 0, ε = 1.5
    # loss = (1.786986^1.5 − 1)·0.407606 + .106507^1.5·(1.407606 + 2.407606) = 0.566088 + 0.132613
    got = ofa_loss(torch.tensor(S[:1]), torch.tensor(T[:1]), torch.tensor(Y[:1]), 1.5)
    assert got.item() == pytest.approx(0.698700, abs=1e-5)


def test_ofa_loss_with_eps_one_is_cross_entropy_on_teacher_probabilities():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    soft_ce = -(F.softmax(t, -1) * F.log_softmax(s, -1)).sum(-1).mean()
    assert torch.allclose(ofa_loss(s, t, torch.randint(0, 10, (4,)), 1.0), soft_ce, atol=1e-6)


@pytest.mark.parametrize("size,target,k", [(7, 1, 3), (4, 1, 2), (2, 1, 1), (1, 1, 0), (14, 7, 1)])
def test_halvings_counts_stride_two_convs(size, target, k):
    assert halvings(size, target) == k


def _sample(pair, x):
    torch.manual_seed(0)
    teacher = pair.build_teacher(10).eval()
    student = pair.build_student(teacher, 10)
    needs = frozenset({"logits", "features"})
    with torch.no_grad():
        t_out = outputs(teacher, x, needs)
    return student, outputs(student, x, needs), t_out


@pytest.mark.parametrize("pair", [ViTCNN(), ResNetCNN()], ids=["vit-cnn", "resnet-cnn"])
def test_ofa_builds_one_branch_per_stage_each_giving_logits(pair):
    x = torch.randn(4, 1, 28, 28)
    student, s_out, t_out = _sample(pair, x)
    method = OFA()
    branches = method.adapters(s_out.detach(), t_out)
    assert len(branches) == 4
    for stage, head in zip(method.hp.stages, branches):
        assert head(s_out.features[stage]).shape == (4, 10)
    width = max(s_out.features[-1].shape[1], t_out.features[-1].shape[1])  # 128 for the ViT, 256 for the ResNet
    assert branches[-1][-1].in_features == width
    terms = method.loss(s_out, t_out, torch.tensor([0, 1, 2, 3]))
    assert set(terms) == {"ce", "kd", "ofa"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in branches.parameters())
    assert next(student.parameters()).grad is not None


def test_ofa_hyper_parameters_come_from_set_strings():
    method = OFA(stages="-2,-1", eps="1.2", width="32")
    assert method.hp.stages == (-2, -1) and method.hp.eps == 1.2 and method.hp.width == 32


def test_ofa_branch_weight_zero_leaves_ce_plus_kd():
    s = Outputs(logits=torch.tensor(S), features=[torch.randn(2, 4, 2, 2)])
    t = Outputs(logits=torch.tensor(T), features=[torch.randn(2, 4, 2, 2)])
    method = OFA(stages="-1", branch_weight="0")
    method.adapters(s, t)
    terms = method.loss(s, t, torch.tensor(Y))
    assert terms["ofa"].item() == 0.0
    assert terms["kd"].item() == pytest.approx(_by_hand(S, T, Y, 1.5, 1.0), rel=1e-6)


def test_ofa_refuses_a_stage_the_student_does_not_have():
    s = Outputs(logits=torch.zeros(2, 3), features=[torch.zeros(2, 4, 2, 2)] * 5)
    with pytest.raises(UsageError, match="5 feature maps"):
        OFA(stages="-6,-1").adapters(s, s)
