"""The setup checks the report shows (teacher margin, B vs B/2 convergence, collapse flags),
and the run options behind them (--budget-scale, --match-seconds)."""
from __future__ import annotations

import json

import pytest

from kdbench import UsageError
from kdbench.plan import RunConfig
from kdbench.report import render_markdown
from kdbench.soundness import collapses, convergence, teacher_margins
from kdbench.stats import ok_frame


def _record(method: str, seed: int, steps: int, val: float, test: float = 0.80, pair: str = "p",
            mode: str = "steps", seconds: float | None = None, **extra) -> dict:
    return {
        "pair": pair, "method": method, "seed": seed, "profile": "standard", "status": "ok", "dataset": "d",
        "scenario": "full", "budget": {"mode": mode, "steps": steps if mode == "steps" else None, "seconds": seconds},
        "metrics": {"test_acc": test, "val_acc": val, "teacher_test_acc": 0.90},
        "size_bytes": {"student": 1_000}, "params": {"teacher": 100, "student": 10, "adapters": 0},
        "flops": {"teacher": 1e6, "student": 1e5}, "speedup_bs1": 2.0, "speedup_bsN": 3.0,
        "train": {"seconds": 12.0 + seed, "steps": steps, "epochs": steps / 100}, "teacher_source": "shipped",
        "created": "2026-01-01T00:00:00Z", "command": "kdbench run", "versions": {"kdbench": "0"},
        "hparams": {}, **extra,
    }


@pytest.mark.parametrize("half, full, converged", [(0.880, 0.883, True), (0.870, 0.880, False)])
def test_convergence_compares_the_baseline_at_b_and_b_over_2_on_validation(half, full, converged):
    records = [_record("student-only", s, 200, half, test=0.1) for s in range(3)]
    records += [_record("student-only", s, 400, full, test=0.99) for s in range(3)]
    (row,) = convergence(ok_frame(records), "student-only")
    assert row["B (steps)"] == 400 and row["epochs"] == pytest.approx(4.0)
    assert row["Δ"] == pytest.approx((full - half) * 100)  # validation, never test
    assert row["converged"] is converged


def test_no_convergence_row_without_a_half_budget():
    records = [_record("student-only", s, steps, 0.8) for s in range(3) for steps in (300, 400)]
    assert convergence(ok_frame(records), "student-only") == []


def test_teacher_margin_is_teacher_minus_the_student_alone():
    records = [_record("student-only", s, 400, 0.8, test=0.86) for s in range(3)]
    (row,) = teacher_margins(ok_frame(records), "student-only")
    assert row["margin"] == pytest.approx(4.0) and row["teacher source"] == "shipped"


def test_a_collapsed_phase_boundary_is_flagged_and_a_healthy_one_is_not():
    check = lambda spread: [{"at": "end of intermediate", "step": 50, "pooled_spread": spread,  # noqa: E731
                             "teacher_pooled_spread": 0.03, "hidden_r2": 0.01}]
    records = [_record("tinybert", 0, 100, 0.1, phase_checks=check(0.002)),
               _record("tinybert", 1, 100, 0.6, phase_checks=check(0.02))]
    (line,) = collapses(records)
    assert "p/tinybert/seed0" in line and "0.0020" in line and "R² 0.01" in line


def test_the_report_shows_the_checks_and_folds_the_half_budget_runs_into_them():
    records = [_record(m, s, 400, 0.88, test=0.85 + (0.01 if m == "hinton" else 0)) for m in ("student-only", "hinton")
               for s in range(3)]
    records += [_record("student-only", s, 200, 0.879) for s in range(3)]
    text = render_markdown(records)
    assert "## Is the setup sound?" in text and "Budget convergence" in text and "| yes " in text
    assert text.count("## p — standard profile") == 1  # the B/2 runs are no table of their own
    assert "| +5.00 " in text or "| +4.50 " in text  # teacher margin, signed


def test_time_matched_tables_are_named_apart_from_the_step_matched_ones():
    records = [_record(m, s, 400, 0.88) for m in ("student-only", "hinton") for s in range(2)]
    records += [_record(m, s, 0, 0.88, mode="time", seconds=13.5) for m in ("student-only", "hinton") for s in range(2)]
    text = render_markdown(records)
    assert "## p — standard profile, 400 steps" in text and "## p — standard profile, time budget 13.5 s" in text


def test_budget_scale_halves_the_profiles_steps():
    assert RunConfig(budget_scale=0.5).budget(301).steps == 150
    assert RunConfig(budget_scale=0.5, budget_steps=1000).budget(301).steps == 500
    assert RunConfig().budget(301).steps == 301


@pytest.mark.parametrize("options", [
    {"budget_scale": 0.0}, {"budget_scale": 0.5, "budget_mode": "time", "budget_seconds": 3.0},
    {"match_seconds": "student-only"}, {"match_seconds": "student-only", "budget_mode": "time", "budget_seconds": 2.0},
])
def test_bad_budget_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        RunConfig(**options)


def test_a_resumed_time_matched_run_keeps_the_seconds_its_pair_was_given(tmp_path):
    from kdbench.plan import resumed_match

    folder = tmp_path / "mlp-hinton" / "hinton"
    folder.mkdir(parents=True)
    for s, (created, seconds) in enumerate([("2026-01-01T00:00:00Z", 9.0), ("2026-01-02T00:00:00Z", 12.5)]):
        rec = _record("hinton", s, 0, 0.8, pair="mlp-hinton", mode="time", seconds=seconds,
                      matched={"method": "student-only", "seconds": seconds})
        rec["created"] = created
        (folder / f"seed{s}.json").write_text(json.dumps(rec))
    config = RunConfig(profile="standard", out=tmp_path, budget_mode="time", match_seconds="student-only")
    assert resumed_match(config, "mlp-hinton") == 12.5  # the latest run's
    assert resumed_match(config, "resnet-cnn") is None  # never matched: timed first in the run


def test_match_seconds_times_the_baseline_in_the_same_run_and_resumes(tmp_path, cli_run):
    out = tmp_path / "runs"
    args = ("run", "--profile", "smoke", "--pairs", "mlp-hinton", "--methods", "student-only,hinton",
            "--budget-mode", "time", "--match-seconds", "student-only", "--threads", "1", "--quiet",
            "--out", str(out))
    code, stdout, _ = cli_run(*args, "--dry-run")
    assert code == 0 and "the seconds student-only takes for its" in stdout and not out.exists()
    code, _, stderr = cli_run(*args)
    assert code == 0, stderr
    assert "timing its step-budget cells first (1 cells)" in stderr
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    (timed,) = [r for r in records if r["budget"]["mode"] == "steps"]
    matched = [r for r in records if r["budget"]["mode"] == "time"]
    assert timed["method"] == "student-only" and {r["method"] for r in matched} == {"student-only", "hinton"}
    for r in matched:
        assert r["budget"]["seconds"] == r["matched"]["seconds"] == round(timed["train"]["seconds"], 1)
    code, stdout, stderr = cli_run(*args)  # resumed: nothing timed or run again
    assert code == 0 and "timing" not in stderr and "0 cells run, 2 reused" in stdout
