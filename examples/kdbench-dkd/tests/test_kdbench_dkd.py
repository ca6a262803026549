"""kdbench-dkd's own tests: the loss by hand, the paper's identity, and kdbench's conformance kit."""
from __future__ import annotations

import pytest
import torch

from kdbench import Outputs
from kdbench.losses import soft_kl
from kdbench.testing import check_method
from kdbench_dkd import DKD, dkd_terms


def _by_hand(s: torch.Tensor, t: torch.Tensor, y: int, temp: float) -> tuple[float, float]:
    """TCKD and NCKD of one example, written out with explicit probabilities."""
    p_s, p_t = torch.softmax(s / temp, -1).double(), torch.softmax(t / temp, -1).double()
    b_s = torch.stack([p_s[y], 1 - p_s[y]])
    b_t = torch.stack([p_t[y], 1 - p_t[y]])
    keep = [j for j in range(len(s)) if j != y]
    q_s, q_t = p_s[keep] / p_s[keep].sum(), p_t[keep] / p_t[keep].sum()
    tckd = float((b_t * (b_t / b_s).log()).sum()) * temp**2
    nckd = float((q_t * (q_t / q_s).log()).sum()) * temp**2
    return tckd, nckd


def test_terms_match_the_definition_by_hand():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 7, generator=g) * 3, torch.randn(4, 7, generator=g) * 3
    y = torch.tensor([0, 3, 6, 2])
    tckd, nckd = dkd_terms(s, t, y, temperature=2.0)
    hand = [_by_hand(s[i], t[i], int(y[i]), 2.0) for i in range(4)]
    assert float(tckd) == pytest.approx(sum(h[0] for h in hand) / 4, rel=1e-5)
    assert float(nckd) == pytest.approx(sum(h[1] for h in hand) / 4, rel=1e-5)


def test_classical_kd_decomposes_into_tckd_plus_weighted_nckd():
    """The paper's Eq. 7: KD = TCKD + (1 − p_t,target) · NCKD, per example."""
    g = torch.Generator().manual_seed(1)
    s, t, y, temp = torch.randn(1, 10, generator=g), torch.randn(1, 10, generator=g), torch.tensor([4]), 3.0
    tckd, nckd = dkd_terms(s, t, y, temp)
    p_target = torch.softmax(t / temp, -1)[0, 4]
    assert float(soft_kl(s, t, temp)) == pytest.approx(float(tckd + (1 - p_target) * nckd), rel=1e-5)


def test_identical_logits_give_zero_terms():
    z = torch.randn(3, 5)
    tckd, nckd = dkd_terms(z, z.clone(), torch.tensor([1, 2, 0]), 4.0)
    assert float(tckd) == pytest.approx(0.0, abs=1e-6) and float(nckd) == pytest.approx(0.0, abs=1e-6)


def test_alpha_beta_weigh_the_terms_after_warmup():
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    method = DKD(alpha=0.5, beta=2.0, temperature=4.0)
    method.progress = 0.5  # past the warm-up
    terms = method.loss(Outputs(logits=s), Outputs(logits=t), y)
    tckd, nckd = dkd_terms(s, t, y, 4.0)
    assert float(terms["tckd"]) == pytest.approx(0.5 * float(tckd))
    assert float(terms["nckd"]) == pytest.approx(2.0 * float(nckd))
    assert float(terms["ce"]) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)))


def test_warmup_ramps_the_dkd_terms_linearly():
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    method = DKD(warmup=0.2)
    full = DKD(warmup=0.0).loss(Outputs(logits=s), Outputs(logits=t), y)
    method.progress = 0.05
    quarter = method.loss(Outputs(logits=s), Outputs(logits=t), y)
    assert float(quarter["nckd"]) == pytest.approx(0.25 * float(full["nckd"]))
    assert float(quarter["ce"]) == pytest.approx(float(full["ce"]))


def test_gradients_are_finite_for_confident_logits():
    s = torch.tensor([[60.0, -60.0, 0.0]], requires_grad=True)
    t = torch.tensor([[80.0, -80.0, 0.0]])
    tckd, nckd = dkd_terms(s, t, torch.tensor([0]), 1.0)
    (tckd + nckd).backward()
    assert torch.isfinite(s.grad).all()


def test_dkd_passes_the_kdbench_conformance_kit():
    report = check_method(DKD, pair="mlp-hinton")
    assert "end-to-end" in report.passed and report.record["status"] == "ok"
