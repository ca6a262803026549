"""Statistics and the generated report: paired intervals, determinism, time budgets."""
from __future__ import annotations

import math

import pytest

from kdbench.report import paired_delta, render_markdown


def _record(method: str, seed: int, acc: float, pair: str = "p") -> dict:
    return {
        "pair": pair, "method": method, "seed": seed, "profile": "smoke", "status": "ok", "dataset": "d",
        "budget": {"mode": "steps", "steps": 10, "seconds": None},
        "metrics": {"test_acc": acc, "teacher_test_acc": 0.9},
        "params": {"teacher": 100, "student": 10, "adapters": 0},
        "flops": {"teacher": 1e6, "student": 1e5},
        "speedup_bs1": 2.0, "speedup_bsN": 3.0,
        "train": {"seconds": 1.0, "steps": 10},
        "created": "2026-01-01T00:00:00Z", "command": "kdbench run", "versions": {"kdbench": "0"},
    }


def test_paired_delta_matches_the_t_interval_by_hand():
    d = paired_delta([21.0, 22.0, 23.0], [2.0, 2.0, 2.0])  # differences 19, 20, 21: sd 1
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) · sd / √n
    assert d.mean == pytest.approx(20.0)
    assert (d.low, d.high) == (pytest.approx(20.0 - half), pytest.approx(20.0 + half))
    assert d.significant


def test_interval_spanning_zero_is_not_significant():
    d = paired_delta([0.80, 0.78, 0.82], [0.79, 0.80, 0.80])
    assert d.low < 0 < d.high and not d.significant
    assert d.format().endswith("ns")


def test_one_seed_has_no_interval():
    d = paired_delta([0.8], [0.7])
    assert d.n == 1 and not d.significant and "(n=1)" in d.format()


def test_report_says_which_methods_beat_student_only():
    records = [_record("student-only", s, 0.80 + s / 1000) for s in range(3)]
    records += [_record("hinton", s, 0.82 + s / 1000) for s in range(3)]
    text = render_markdown(records)
    assert "Beat `student-only` with a 95% CI excluding 0: `hinton`." in text
    assert "+2.00 [+2.00, +2.00]" in text


def test_same_records_render_the_same_bytes(tmp_path):
    records = [_record(m, s, 0.8 + 0.01 * s) for m in ("student-only", "hinton") for s in range(2)]
    a = render_markdown(records, plots_dir=tmp_path / "plots", link_from=tmp_path)
    b = render_markdown(list(reversed(records)), plots_dir=tmp_path / "plots", link_from=tmp_path)
    assert a == b
    assert "](plots/" in a and any((tmp_path / "plots").glob("*.png"))


def test_failed_cells_are_listed_not_aggregated():
    records = [_record("student-only", 0, 0.8), {**_record("hinton", 0, 0.0), "status": "failed", "error": "boom"}]
    text = render_markdown(records)
    assert "- p/hinton/seed0: boom" in text
    assert "| hinton" not in text


def test_time_budget_gives_a_slower_method_fewer_steps(tmp_path, cli_run):
    plugin = tmp_path / "slow.py"
    plugin.write_text(
        "import time\nimport torch.nn.functional as F\nfrom kdbench import hookimpl, Method\n\n"
        "class Slow(Method):\n    name = 'slow'\n    uses_teacher = False\n\n"
        "    def loss(self, student, teacher, labels):\n        time.sleep(0.02)\n"
        "        return {'ce': F.cross_entropy(student.logits, labels)}\n\n"
        "@hookimpl\ndef kdbench_methods():\n    return [Slow]\n"
    )
    out = tmp_path / "runs"
    code, _, stderr = cli_run("run", "--plugin", str(plugin), "--methods", "student-only,slow", "--pairs", "mlp-hinton",
                              "--profile", "smoke", "--budget-mode", "time", "--budget-seconds", "1.5",
                              "--out", str(out), "--quiet")
    assert code == 0, stderr
    from kdbench.results import load_records

    by_method = {r["method"]: r for r in load_records([out])}
    fast, slow = by_method["student-only"]["train"], by_method["slow"]["train"]
    assert slow["steps"] < fast["steps"]
    assert slow["seconds"] == pytest.approx(1.5, abs=0.5) and fast["seconds"] == pytest.approx(1.5, abs=0.5)
    assert by_method["slow"]["budget"] == {"mode": "time", "steps": None, "seconds": 1.5}
