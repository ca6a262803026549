"""Statistics and the generated report: paired intervals, determinism, time budgets."""
from __future__ import annotations

import math

import pytest

from kdbench.report import render_markdown
from kdbench.stats import paired_delta


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
    records += [_record("hinton", s, 0.82 + s / 1000 + (0.001, -0.001, 0.0)[s]) for s in range(3)]
    text = render_markdown(records)
    assert "Paired over 3 seeds: beat `student-only` with a 95% CI excluding 0: `hinton`." in text
    assert "+2.00 [-0.48, +4.48]" not in text and "+2.00 [+" in text


def test_same_records_render_the_same_bytes(tmp_path):
    records = [_record(m, s, 0.8 + 0.01 * s) for m in ("student-only", "hinton") for s in range(2)]
    a = render_markdown(records, plots_dir=tmp_path / "plots", link_from=tmp_path)
    first = {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}
    b = render_markdown(list(reversed(records)), plots_dir=tmp_path / "plots", link_from=tmp_path)
    assert a == b
    assert "](plots/" in a and first
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}  # seaborn's jitter too


def test_plot_titles_name_the_scenario(tmp_path, monkeypatch):
    """A pair's figures under `full` and under `labels-3` must not carry the same title."""
    from kdbench import plots

    titles = []
    real = plots.accuracy_vs_cost
    monkeypatch.setattr(plots, "accuracy_vs_cost",
                        lambda runs, title, path, colours: titles.append(title) or real(runs, title, path, colours))
    records = [{**_record(m, s, 0.8 + 0.01 * s), "scenario": sc}
               for m in ("student-only", "hinton") for s in range(2) for sc in ("full", "labels-3")]
    render_markdown(records, plots_dir=tmp_path / "plots", link_from=tmp_path)
    assert sorted(titles) == ["p — smoke profile", "p — smoke profile, scenario labels-3"]


def test_failed_cells_are_listed_not_aggregated():
    records = [_record("student-only", 0, 0.8), {**_record("hinton", 0, 0.0), "status": "failed", "error": "boom"}]
    text = render_markdown(records)
    assert "- p/hinton/seed0: boom" in text
    assert "| hinton" not in text


def test_time_budget_gives_a_slower_method_fewer_steps(tmp_path, monkeypatch, registry):
    """Time mode on a fake clock (every loss call costs 10 ms, the slow method's 50 ms): the
    same seconds buy the slow method fewer steps, and records keep steps and seconds used."""
    import kdbench.train
    from kdbench.plan import Cell, RunConfig
    from kdbench.runner import Runner

    now = [0.0]
    monkeypatch.setattr(kdbench.train, "clock", lambda: now[0])
    hinton = registry.method("hinton").obj
    original = hinton.loss

    def costed(self, student, teacher, labels):
        now[0] += 0.05 if self.hp.temperature == 8.0 else 0.01  # the "slow" variant
        return original(self, student, teacher, labels)

    monkeypatch.setattr(hinton, "loss", costed)
    runner = Runner(registry, RunConfig(profile="smoke", out=tmp_path, progress=False,
                                        budget_mode="time", budget_seconds=1.0))
    records = runner.run([Cell("mlp-hinton", "hinton", 0), Cell("mlp-hinton", "hinton", 0, (("temperature", "8"),))])
    fast, slow = sorted(records.written, key=lambda r: r["hparams"]["temperature"])
    assert fast["train"]["steps"] == 100 and slow["train"]["steps"] == 20
    assert fast["train"]["seconds"] == pytest.approx(1.0) and slow["train"]["seconds"] == pytest.approx(1.0)
    assert slow["budget"] == {"mode": "time", "steps": None, "seconds": 1.0}


def _budget(record: dict, steps: int | None, seconds: float | None = None) -> dict:
    mode = "steps" if steps else "time"
    metrics = {**record["metrics"], "val_acc": record["metrics"]["test_acc"]}
    return {**record, "metrics": metrics, "budget": {"mode": mode, "steps": steps, "seconds": seconds}}


def _mixed_budgets() -> list[dict]:
    """A pair's main table (10 steps, both methods), its B/2 `student-only` cells, and a
    time-matched table whose Δ differs: +2 points at 10 steps, +5 at 1.5 s."""
    records = []
    for s in range(3):
        records += [_budget(_record("student-only", s, 0.80 + s / 100), 10),
                    _budget(_record("hinton", s, 0.82 + s / 100), 10),
                    _budget(_record("student-only", s, 0.70), 5),
                    _budget(_record("student-only", s, 0.75 + s / 100), None, 1.5),
                    _budget(_record("hinton", s, 0.80 + s / 100), None, 1.5)]
    return records


def test_a_time_matched_table_keeps_step_budgets_whole_numbers(tmp_path):
    from kdbench.stats import ok_frame
    frame = ok_frame(_mixed_budgets())
    assert set(frame["budget_key"]) == {"steps:10", "steps:5", "time:1.5"}
    assert ok_frame([_budget(_record("hinton", 0, 0.8), None, 126.0)])["budget_key"].tolist() == ["time:126"]
    render_markdown(_mixed_budgets(), plots_dir=tmp_path, link_from=tmp_path)
    assert not [p.name for p in tmp_path.glob("*_0-*.png")]


def test_notes_compare_seeds_at_the_main_budget_only():
    """A note's Δ pairs each seed once, at the budget most methods ran at (steps before
    time on a tie): never with the B/2 or time-matched cells of the same scenario."""
    from kdbench.stats import Deltas, ok_frame
    d = Deltas(ok_frame(_mixed_budgets()), "student-only").delta("p", "smoke", "full", "hinton")
    assert d.n == 3 and d.mean == pytest.approx(0.02) and d.high - d.low == pytest.approx(0.0, abs=1e-9)


THIRD_PARTY_BASELINE = '''
import torch.nn.functional as F
from kdbench import Method, hookimpl


class LabelSmoothing(Method):
    """Cross-entropy with label smoothing: a stronger no-teacher baseline."""
    name = "label-smoothing"
    uses_teacher = False
    baseline = 2

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels, label_smoothing=0.1)}


@hookimpl
def kdbench_methods():
    return [LabelSmoothing]


@hookimpl
def kdbench_report_notes(deltas):
    return [f"- smoothing on {pair}: {deltas.delta(pair, profile, 'full', 'label-smoothing').format()}"
            for pair, profile, _ in deltas.groups()] + [""]
'''


def test_a_third_party_baseline_uses_the_same_door_as_the_built_ins(tmp_path):
    """Baselines and report notes come from plugins, not from names the report knows."""
    from kdbench.plugins import load_registry

    plugin = tmp_path / "smoothing.py"
    plugin.write_text(THIRD_PARTY_BASELINE)
    registry = load_registry([str(plugin)])
    assert registry.baselines() == ("student-only", "hinton", "label-smoothing")
    records = [{**_record(m, s, acc + s / 1000), "scenario": sc}
               for m, acc in (("student-only", 0.80), ("hinton", 0.82), ("label-smoothing", 0.81))
               for s in range(3) for sc in ("full", "labels-3")]
    text = render_markdown(records, registry=registry)
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "Δ vs student-only" in header and "Δ vs hinton" in header and "Δ vs label-smoothing" in header
    assert "- smoothing on p: +1.00 (same on all 3 seeds: no interval)" in text  # its note, in "When does distillation pay?"
    assert "Δ(hinton − student-only) is +2.00" in text  # the built-in hinton note still there


def test_without_baselines_the_report_gives_no_verdict():
    from kdbench.plugins import Registry

    class NoPlugins(Registry):
        def baselines(self):
            return ()

    records = [_record("hinton", s, 0.82) for s in range(2)]
    text = render_markdown(records, registry=NoPlugins(pm=None))
    assert "No baseline method is installed, so no verdict." in text and "Δ vs" not in text


def test_one_method_at_two_settings_gets_two_rows_never_one_average():
    records = [_record("student-only", s, 0.80 + s / 100) for s in range(2)]
    records += [{**_record("hinton", s, 0.82 + s / 100 + 0.001 * s), "hparams": {"temperature": 4.0, "alpha": 0.5}}
                for s in range(2)]
    records += [{**_record("hinton", s, 0.70 + s / 100 + 0.002 * s), "hparams": {"temperature": 20.0, "alpha": 0.5}}
                for s in range(2)]
    text = render_markdown(records)
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| hinton")]
    assert rows == ["hinton[temperature=20.0]", "hinton[temperature=4.0]"]


def test_provenance_names_the_pairs_whose_costs_were_remeasured():
    records = [_record(m, s, 0.8) for m in ("student-only", "hinton") for s in range(2)]
    assert "re-measured" not in render_markdown(records)
    records[0]["costs_remeasured"] = {"at": "2026-02-01T00:00:00Z", "threads": 1, "busy_cores": 0,
                                      "command": "kdbench remeasure results --pairs p", "replaced": {}}
    text = render_markdown(records)
    assert "re-measured after training with `kdbench remeasure` for p (2026-02-01T00:00:00Z" in text
    assert "`kdbench remeasure results --pairs p`" in text  # the command that made them, beside the run's
