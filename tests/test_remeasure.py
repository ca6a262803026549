"""`kdbench remeasure`: a pair's costs measured again into its records, accuracy untouched."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.results import load_records


@pytest.fixture(scope="module")
def smoke_records(grid_out) -> Path:
    return grid_out("--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke",
                    "--device", "cpu", "--quiet", "--threads", "1", name="remeasure")


def _copy(src: Path, dst: Path) -> Path:
    for f in src.rglob("*.json"):
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.read_text())
    return dst


def _files(out: Path) -> dict[str, dict]:
    return {str(f.relative_to(out)): json.loads(f.read_text()) for f in sorted(out.rglob("*.json"))}


def test_remeasure_rewrites_costs_and_keeps_what_the_cell_measured(smoke_records, tmp_path, cli_run):
    out = _copy(smoke_records, tmp_path / "results")
    before = _files(out)
    disturbed = sorted(before)[0]
    bad = dict(before[disturbed], speedup_bs1=108.9)
    bad["latency_ms"] = dict(bad["latency_ms"], teacher_bs1=543.9)
    (out / disturbed).write_text(json.dumps(bad))

    code, stdout, stderr = cli_run("remeasure", str(out), "--pairs", "mlp-hinton")
    assert code == 0, stderr
    assert "smoke mlp-hinton" in stdout and f"{len(before)} records rewritten" in stdout and "108.90×" in stdout

    after = _files(out)
    assert sorted(after) == sorted(before)  # same files: identity (and cell id) unchanged
    for name, new in after.items():
        old = before[name]
        assert new["metrics"] == old["metrics"] and new["curve"] == old["curve"] and new["train"] == old["train"]
        assert new["quantized"]["test_acc"] == old["quantized"]["test_acc"]
        assert new["speedup_bs1"] == pytest.approx(new["latency_ms"]["teacher_bs1"] / new["latency_ms"]["student_bs1"])
        assert new["costs_remeasured"]["threads"] == 1  # the cells' count, read from the records
    assert after[disturbed]["costs_remeasured"]["replaced"]["speedup_bs1"] == 108.9
    assert after[disturbed]["latency_ms"]["teacher_bs1"] != 543.9
    assert len(load_records([out])) == len(before)  # every rewritten record still reads

    code, _, stderr = cli_run("remeasure", str(out), "--pairs", "mlp-hinton")  # a second time
    assert code == 0, stderr
    assert _files(out)[disturbed]["costs_remeasured"]["replaced"]["speedup_bs1"] == 108.9  # the cell's own, kept


def test_remeasure_leaves_records_of_another_student_alone(smoke_records, tmp_path, cli_run):
    out = _copy(smoke_records, tmp_path / "results")
    name = sorted(_files(out))[0]
    other = dict(_files(out)[name], student="0123456789ab")
    (out / name).write_text(json.dumps(other))

    code, stdout, _ = cli_run("remeasure", str(out), "--threads", "1")
    assert code == 0
    assert "left alone" in stdout and "not the pair's current one" in stdout
    assert "costs_remeasured" not in json.loads((out / name).read_text())


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "is not a folder of records"),
    (["{empty}"], "holds no ok records"),
    (["{results}", "--pairs", "mlp-hintn"], "no ok records of pair 'mlp-hintn' to re-measure; did you mean 'mlp-hinton'?"),
    (["{results}", "--pairs", ","], "--pairs ',' names nothing"),
    (["{results}", "--threads", "0"], "--threads"),
])
def test_remeasure_bad_input_is_one_line_and_changes_nothing(smoke_records, tmp_path, cli_run, args, message):
    out = _copy(smoke_records, tmp_path / "results")
    (tmp_path / "empty").mkdir()
    before = _files(out)
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "results": out}
    code, stdout, stderr = cli_run("remeasure", *[a.format(**paths) for a in args])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr and _files(out) == before
