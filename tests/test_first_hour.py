"""A user's first hour: output that fits a terminal, numbers a program can read, plugin
failures that say where they broke, honest statistics, and the rough edges a new user hit."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from kdbench.report import render_markdown
from kdbench.stats import paired_delta

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--pairs", "mlp-hinton", "--profile", "smoke", "--quiet"]

BROKEN_LOSS = '''
import torch.nn.functional as F
from kdbench import Method, hookimpl


class Broken(Method):
    """Indexes a tap that is None (a test method)."""
    name = "broken"

    def loss(self, student, teacher, labels):
        first = student.features[0]  # the mistake: features were never asked for
        return {"ce": F.cross_entropy(student.logits, labels) + first.sum()}


@hookimpl
def kdbench_methods():
    return [Broken]
'''


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    from click.testing import CliRunner

    from kdbench.cli import cli

    out = tmp_path_factory.mktemp("first-hour") / "out"
    result = CliRunner().invoke(cli, ["run", "--methods", "student-only,hinton", *SMOKE, "--seeds", "2",
                                      "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.stdout


# -- output that fits a terminal -----------------------------------------------------------------
def test_run_prints_a_compact_table_within_100_columns(smoke_out):
    _, stdout = smoke_out
    assert _widest(stdout) <= 100
    assert "Δ vs student-only" in stdout and "95% CI" in stdout and "teacher" in stdout


def test_report_on_the_committed_results_fits_100_columns(cli_run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, stdout, _ = cli_run("report", str(ROOT / "results"))
    assert code == 0 and _widest(stdout) <= 100
    assert "student-only" in stdout and "Paired over 3 seeds" in stdout
    code, wide, _ = cli_run("report", str(ROOT / "results"), "--wide")
    assert code == 0 and _widest(wide) > 100 and "int8 acc %" in wide  # everything, on request


@pytest.mark.parametrize("args", [["list"], ["list", "methods", "--hparams"], ["show", "ofa"]])
def test_listings_fit_the_terminal(cli_run, monkeypatch, args):
    monkeypatch.setenv("COLUMNS", "100")
    code, stdout, _ = cli_run(*args)
    assert code == 0 and _widest(stdout) <= 100


# -- numbers a program can read -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_report_formats_are_numeric(cli_run, smoke_out, fmt):
    out, _ = smoke_out
    code, stdout, _ = cli_run("report", str(out), "--format", fmt)
    assert code == 0
    table = pd.read_csv(io.StringIO(stdout)) if fmt == "csv" else pd.DataFrame(json.loads(stdout))
    for column in ("mean", "sd", "ci_low", "ci_high", "delta", "speedup_bs1"):
        assert table[column].dtype.kind == "f", column
    assert table["student_params"].dtype.kind == "i" and table["n"].tolist() == [2, 2]


# -- failures that say where they broke ---------------------------------------------------------------
def test_a_broken_plugin_loss_names_its_file_and_line(cli_run, tmp_path):
    plugin = tmp_path / "broken_kd.py"
    plugin.write_text(BROKEN_LOSS)
    out = tmp_path / "out"
    code, _, err = cli_run("run", "--plugin", str(plugin), "--methods", "broken", *SMOKE, "--out", str(out))
    assert code == 1
    line = BROKEN_LOSS.splitlines().index("        first = student.features[0]  # the mistake: features were "
                                          "never asked for") + 1
    assert f"at {plugin}:{line}: first = student.features[0]" in err
    assert '"traceback"' in err and "Traceback (most recent call last)" not in err
    record = json.loads(next(out.rglob("*.json")).read_text())
    assert "Traceback (most recent call last)" in record["traceback"] and str(plugin) in record["traceback"]


@pytest.mark.parametrize("flag", ["-v", "--fail-fast"])
def test_verbose_or_fail_fast_print_the_whole_traceback(cli_run, tmp_path, flag):
    plugin = tmp_path / "broken_kd.py"
    plugin.write_text(BROKEN_LOSS)
    code, _, err = cli_run("run", "--plugin", str(plugin), "--methods", "broken", *SMOKE, flag,
                           "--out", str(tmp_path / "out"))
    assert code == 1 and "Traceback (most recent call last)" in err and "first = student.features[0]" in err


# -- honest statistics ----------------------------------------------------------------------------
def test_a_zero_width_interval_is_shown_as_such_and_never_significant():
    d = paired_delta([0.782, 0.792], [0.800, 0.810])  # -1.80 points on both seeds
    assert d.zero_spread and not d.significant
    assert d.format() == "-1.80 (same on all 2 seeds: no interval)"


def test_a_verdict_says_how_many_seeds_it_rests_on():
    def record(method: str, seed: int, acc: float) -> dict:
        return {"pair": "p", "method": method, "seed": seed, "profile": "smoke", "status": "ok",
                "budget": {"mode": "steps", "steps": 10, "seconds": None},
                "metrics": {"test_acc": acc, "teacher_test_acc": 0.9},
                "params": {"teacher": 100, "student": 10, "adapters": 0}, "flops": {"teacher": 1, "student": 1},
                "speedup_bs1": 2.0, "speedup_bsN": 3.0, "train": {"seconds": 1.0, "steps": 10}}

    same = [record("student-only", s, 0.80 + s / 100) for s in range(2)]
    same += [record("hinton", s, 0.782 + s / 100) for s in range(2)]
    text = render_markdown(same)
    assert "Paired over 2 seeds: no method beat `student-only`" in text
    assert "Significantly below" not in text and "(same on all 2 seeds: no interval)" in text


# -- hyper-parameters visible ----------------------------------------------------------------------
def test_show_gives_each_default_with_its_source(cli_run):
    code, stdout, _ = cli_run("show", "hinton")
    assert code == 0
    assert "temperature" in stdout and "4.0" in stdout and "float" in stdout and "RepDistiller" in stdout
    assert "alpha" in stdout and "CE 0.1 / KD 0.9" in stdout


def test_every_built_in_default_has_a_source(registry):
    missing = {name: sorted(set(e.obj.defaults) - set(e.obj.sources))
               for name, e in registry.methods.items() if e.origin == "built-in"}
    assert {k: v for k, v in missing.items() if v} == {}


# -- rough edges -----------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--methods", "--pairs"])
def test_an_empty_name_list_is_refused(cli_run, tmp_path, option):
    code, stdout, err = cli_run("run", option, ",", "--profile", "smoke", "--out", str(tmp_path / "out"))
    assert code == 2 and stdout == "" and f"{option} ',' names nothing" in err
    assert not (tmp_path / "out").exists()


def test_dry_run_checks_out_like_a_run(cli_run, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    code, stdout, err = cli_run("run", "--methods", "hinton", *SMOKE, "--dry-run", "--out", str(a_file))
    assert code == 2 and "--out" in err and stdout == ""


def test_help_texts_render_percent_signs(cli_run):
    code, stdout, _ = cli_run("run", "--help")
    assert code == 0 and "%%" not in stdout and "N% of the labels" in " ".join(stdout.split())


def test_an_interrupted_teacher_training_says_what_it_keeps(cli_run, monkeypatch):
    from kdbench.worker import CellWorker

    def interrupted(self, pair, splits, steps_fraction=1.0):
        raise KeyboardInterrupt

    monkeypatch.setattr(CellWorker, "teacher", interrupted)
    code, _, err = cli_run("teachers", "train", "--pairs", "mlp-hinton", "--profile", "smoke")
    assert code == 130 and "starts again from step 0" in err and "resume" not in err


def test_a_rerun_says_how_many_of_its_cells_are_new(cli_run, smoke_out, tmp_path):
    out, _ = smoke_out
    code, _, err = cli_run("run", "--methods", "student-only,hinton", *SMOKE, "--seeds", "3", "--out", str(out))
    assert code == 0 and "4 of 6 cells already have a record" in err and "2 new cells to run" in err


def test_a_run_shows_what_it_prepares_from_the_first_second(cli_run, tmp_path):
    code, _, err = cli_run("run", "--methods", "student-only", "--pairs", "mlp-hinton", "--profile", "smoke",
                           "--out", str(tmp_path / "out"))
    assert code == 0 and "preparing mlp-hinton: data and teachers" in err and "preparing mlp-hinton: measuring" in err


def test_every_figure_gives_a_method_the_same_colour(tmp_path, monkeypatch):
    from kdbench import plots

    seen: dict[str, set] = {}
    for name in ("accuracy_vs_cost", "deltas", "budget_curves"):
        real = getattr(plots, name)

        def spy(*args, _real=real, **kwargs):
            colours = next(a for a in args[3:] if isinstance(a, dict))  # the method → colour map
            for method, colour in colours.items():
                seen.setdefault(method, set()).add(tuple(colour))
            return _real(*args, **kwargs)

        monkeypatch.setattr(plots, name, spy)
    teacher_lines = []
    real_line = plots._teacher_line
    monkeypatch.setattr(plots, "_teacher_line", lambda ax, acc, label: teacher_lines.append(acc) or real_line(ax, acc, label))
    records = [json.loads(p.read_text()) for p in (ROOT / "results" / "resnet-cnn").rglob("*.json")]
    records += [json.loads(p.read_text()) for p in (ROOT / "results" / "mlp-hinton").rglob("*.json")]
    render_markdown(records, plots_dir=tmp_path, link_from=tmp_path)
    assert {"student-only", "hinton", "fitnet", "ofa"} <= set(seen)
    assert all(len(colours) == 1 for colours in seen.values())
    assert len({next(iter(c)) for c in seen.values()}) == len(seen)  # and no two methods share one
    assert teacher_lines and all(60 < acc < 100 for acc in teacher_lines)  # accuracy and curve plots
