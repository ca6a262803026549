"""Budget curves: validation accuracy at 10 evenly spaced points of the budget, from the one loop."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from kdbench.api import Budget, Schedule, TensorData
from kdbench.train import SupervisedLoss, accuracy, predict, train

SCHEDULE = Schedule(steps=30, teacher_steps=1, batch_size=16)


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    data = TensorData(x, (x[:, 0] > 0).long())
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), data


def _forward(model, x, needs):
    from kdbench.api import Outputs

    return Outputs(logits=model(x))


def test_steps_budget_gives_ten_evenly_spaced_points():
    model, data = _setup()
    result = train(model, SupervisedLoss(), data, Budget("steps", 30), SCHEDULE, _forward, seed=0,
                   evaluate=lambda: accuracy(predict(model, _forward, data), data.y))
    assert [p["step"] for p in result.curve] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert result.curve[-1]["val_acc"] == accuracy(predict(model, _forward, data), data.y)
    assert all(0 <= p["val_acc"] <= 1 for p in result.curve)
    seconds = [p["seconds"] for p in result.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= result.seconds + 1e-3


def test_evaluating_does_not_change_training():
    a, data = _setup()
    plain = train(a, SupervisedLoss(), data, Budget("steps", 30), SCHEDULE, _forward, seed=0)
    b, _ = _setup()
    curved = train(b, SupervisedLoss(), data, Budget("steps", 30), SCHEDULE, _forward, seed=0,
                   evaluate=lambda: accuracy(predict(b, _forward, data), data.y))
    assert plain.losses == curved.losses and plain.curve == []


def test_time_budget_points_are_spaced_in_seconds_and_evaluation_is_not_charged():
    model, data = _setup()
    budget = Budget("time", seconds=0.5)

    def slow_eval() -> float:
        time.sleep(0.1)  # 10 points × 0.1 s = twice the budget: it must not count
        return accuracy(predict(model, _forward, data), data.y)

    started = time.perf_counter()
    result = train(model, SupervisedLoss(), data, budget, SCHEDULE, _forward, seed=0, evaluate=slow_eval)
    wall = time.perf_counter() - started
    assert 3 <= len(result.curve) <= 10  # fewer than 10 only when one (slow) step spans several points
    assert wall >= 0.5 + len(result.curve) * 0.1  # every evaluation ran...
    assert result.seconds < 0.5 + 0.3  # ...and none was charged to the budget
    seconds = [p["seconds"] for p in result.curve]
    assert seconds == sorted(seconds) and seconds[-1] >= 0.5
    assert seconds[0] >= 0.05 and seconds[0] < 0.5  # the first point at a tenth of the budget, not at its end


# -- the report: curves plotted per pair, the "when does it pay" table ------------------------

#: Per-seed noise on hinton's accuracy, so its paired differences have a spread (±0.50-point intervals).
JITTER = (0.002, -0.002, 0.0)


def _record(method: str, seed: int, acc: float, scenario: str) -> dict:
    curve = [{"step": 3 * (i + 1), "seconds": 0.1 * (i + 1), "val_acc": acc * (i + 1) / 10} for i in range(10)]
    return {
        "pair": "p", "method": method, "seed": seed, "profile": "smoke", "status": "ok", "dataset": "d",
        "scenario": scenario, "budget": {"mode": "steps", "steps": 30, "seconds": None},
        "metrics": {"test_acc": acc, "teacher_test_acc": 0.9, "agreement": 0.8, "kl_teacher_student": 0.2},
        "quantized": {"test_acc": acc - 0.01, "latency_ms_bs1": 0.05, "size_bytes": 250_000},
        "size_bytes": {"student": 1_000_000},
        "params": {"teacher": 100, "student": 10, "adapters": 0}, "flops": {"teacher": 1e6, "student": 1e5},
        "speedup_bs1": 2.0, "speedup_bsN": 3.0, "train": {"seconds": 1.0, "steps": 30}, "curve": curve,
        "created": "2026-01-01T00:00:00Z", "command": "kdbench run", "versions": {"kdbench": "0"},
    }


def test_report_links_budget_curves_and_tabulates_when_distillation_pays(tmp_path):
    from kdbench.report import render_markdown

    records = [_record(m, s, base + (gain + JITTER[s] if m == "hinton" else 0) + s / 1000, sc)
               for sc, base, gain in (("full", 0.80, 0.0), ("labels-3", 0.70, 0.03))
               for m in ("student-only", "hinton") for s in range(3)]
    text = render_markdown(records, plots_dir=tmp_path / "plots", link_from=tmp_path)
    assert "## When does distillation pay?" in text
    row = next(line for line in text.splitlines() if line.startswith("| p ") and "hinton" in line)
    assert "+0.00 [-0.50, +0.50] ns" in row and "+3.00 [+2.50, +3.50]" in row  # full, labels-3
    curves = sorted((tmp_path / "plots").glob("*-curves.png"))
    assert len(curves) == 2  # one per scenario table
    assert all(f"](plots/{c.name})" in text for c in curves)
    assert "int8 acc %" in text and "agree %" in text
    again = render_markdown(records, plots_dir=tmp_path / "plots", link_from=tmp_path)
    assert again == text


@pytest.mark.parametrize("gain, words", [
    (0.03, "the label-scarce gain reproduces the direction of Hinton et al.'s regulariser result"),
    (-0.02, "the label-scarce gain does not reproduce the direction of Hinton et al.'s regulariser result"),
])
def test_report_says_whether_the_label_scarce_gain_reproduces_hintons_direction(gain, words):
    from kdbench.report import render_markdown

    records = [_record(m, s, base + (g + JITTER[s] if m == "hinton" else 0) + s / 1000, sc)
               for sc, base, g in (("full", 0.80, 0.0), ("labels-3", 0.70, gain))
               for m in ("student-only", "hinton") for s in range(3)]
    line = next(x for x in render_markdown(records).splitlines() if x.startswith("- **p** (smoke): Δ(hinton"))
    assert f"under `labels-3` against +0.00 [-0.50, +0.50] ns under `full`; {words}." in line


# -- crossover: where a method stops trailing the baseline for good -------------------------------

def _curve_records(method: str, deltas: list[float], seeds: int = 3) -> list[dict]:
    """Records whose curves sit `deltas` (points) above a flat 80% baseline, with per-seed noise."""
    out = []
    for s in range(seeds):
        base = 0.80 + s / 100
        curve = [{"step": 10 * (i + 1), "seconds": i + 1.0, "val_acc": base + d / 100 + (0.001 * (s - 1))}
                 for i, d in enumerate(deltas)]
        out.append({**_record(method, s, base, "full"), "curve": curve})
    return out


@pytest.mark.parametrize("deltas, expected", [
    ([-2, -1, -0.5, 0.5, 1, 1], "step 40 (67%)"),    # trails, then leads for good from the 4th of 6 points
    ([1, 1, -1, 0.5, 0.5, 0.5], "step 40 (67%)"),    # an early lead lost does not count
    ([1, 1, 1, 1, 1, 1], "step 10 (17%)"),           # ahead from the first point
    ([1, 1, 1, 1, 1, -0.2], "never within budget"),  # trails at the end: no crossover
])
def test_crossover_on_curves_with_a_known_answer(deltas, expected):
    import pandas as pd

    from kdbench.stats import crossover

    records = _curve_records("hinton", deltas) + _curve_records("student-only", [0] * len(deltas))
    group = pd.json_normalize(records)
    assert crossover(group, "hinton", "student-only").format() == expected


def test_the_report_gives_each_methods_crossover(tmp_path):
    from kdbench.report import render_markdown

    records = _curve_records("hinton", [-2, -1, -0.5, 0.5, 1, 1]) + _curve_records("student-only", [0] * 6)
    text = render_markdown(records, plots_dir=tmp_path, link_from=tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| p ") and "hinton" in line)
    assert "step 40 (67%)" in row and "crossover (full)" in text
