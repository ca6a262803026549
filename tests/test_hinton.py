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


def test_the_report_gives_hintons_protocol_beside_the_papers_numbers():
    from kdbench.report import render_markdown

    def record(method: str, seed: int, acc: float, temperature: float | None = None) -> dict:
        return {"pair": "mlp-hinton", "method": method, "seed": seed, "profile": "paper", "status": "ok",
                "budget": {"mode": "steps", "steps": 30000, "seconds": None},
                "hparams": {} if temperature is None else {"temperature": temperature, "alpha": 0.5},
                "metrics": {"test_acc": acc, "teacher_test_acc": 0.90},
                "params": {"teacher": 2_395_210, "student": 1_276_810, "adapters": 0},
                "flops": {"teacher": 1, "student": 1}, "speedup_bs1": 2.0, "speedup_bsN": 1.5,
                "train": {"seconds": 1.0, "steps": 30000}, "scenario_info": {"test_examples": 10_000}}

    records = [record("student-only", s, 0.88 + s / 1000) for s in range(3)]
    records += [record("hinton", s, 0.89 + s / 1000 + (0.0005, -0.0005, 0)[s], 20.0) for s in range(3)]
    records += [record("hinton", s, 0.885 + s / 1000 + (0.0005, -0.0005, 0)[s], 4.0) for s in range(3)]
    text = render_markdown(records)
    section = text.split("## Hinton et al.'s protocol", 1)[1].split("\n## ", 1)[0]
    assert "| teacher (2×1200, dropout) | 1 | 1000 | 90.00 | 67 |" in section
    assert "| `student-only` (2×800) | 3 | 1190 | 88.10 | 146 |" in section
    assert "| `hinton[temperature=20.0]` (T = 20.0, α = 0.5) | 3 | 1090 | 89.10 | 74 |" in section
    assert ("- `hinton[temperature=20.0]` − `student-only`: +1.00 [+0.88, +1.12] points; it closes 53% of the "
            "teacher–student gap (the paper's T = 20 closed 91% of it). The paper's direction reproduces."
            ) in section  # 1.0 of 90.0 − 88.1 points

    above = [dict(r, metrics={**r["metrics"], "test_acc": r["metrics"]["test_acc"] + 0.015}) for r in records[3:6]]
    section = render_markdown(records[:3] + above).split("## Hinton et al.'s protocol", 1)[1]
    assert "it ends 0.60 points above the teacher, more than closing the 1.90-point gap" in section

    worse = [dict(r, metrics={**r["metrics"], "test_acc": r["metrics"]["test_acc"] - 0.02}) for r in records[3:6]]
    section = render_markdown(records[:3] + worse).split("## Hinton et al.'s protocol", 1)[1]
    assert "The paper's direction does not reproduce: distillation is worse here." in section
