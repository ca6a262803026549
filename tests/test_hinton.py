"""The Hinton loss against a value computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from kdbench import Outputs
from kdbench_plugins.hinton import Hinton


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_hinton_loss_matches_hand_computation_including_t_squared():
    s, t, y, T, alpha = [1.0, 2.0, 0.5], [0.2, 3.0, -1.0], 1, 2.0, 0.3
    p_t = _softmax([v / T for v in t])
    p_s = _softmax([v / T for v in s])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    ce = -math.log(_softmax(s)[y])
    expected_kd = (1 - alpha) * T**2 * kl
    expected_ce = alpha * ce

    method = Hinton(temperature=T, alpha=alpha)
    terms = method.loss(Outputs(logits=torch.tensor([s])), Outputs(logits=torch.tensor([t])), torch.tensor([y]))
    assert terms["kd"].item() == pytest.approx(expected_kd, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(expected_ce, rel=1e-5)


def test_hinton_hyper_parameters_come_from_set_strings():
    method = Hinton(temperature="20")
    assert method.hp.temperature == 20.0 and method.hp.alpha == 0.5
