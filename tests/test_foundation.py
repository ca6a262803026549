"""Issue 2's walking skeleton: a smoke grid end to end, records, report, fairness."""
from __future__ import annotations

import json
import re

import pytest
import torch

from kdbench.results import load_records

RECORD_KEYS = [
    "pair", "method", "seed", "profile", "status", "metrics.test_acc", "metrics.teacher_test_acc",
    "params.teacher", "params.student", "params.adapters", "latency_ms.teacher_bs1", "latency_ms.student_bs1",
    "speedup_bs1", "budget", "teacher_sha256", "hparams", "versions", "git_sha", "wall_seconds",
]


def _get(record: dict, dotted: str):
    for part in dotted.split("."):
        record = record[part]
    return record


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from click.testing import CliRunner

    from kdbench.cli import cli

    out = tmp_path_factory.mktemp("runs") / "smoke"
    result = CliRunner().invoke(cli, [
        "run", "--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke",
        "--seeds", "2", "--out", str(out), "--quiet",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_smoke_grid_writes_one_record_per_cell(smoke_run):
    out, _ = smoke_run
    records = load_records([out])
    assert sorted((r["method"], r["seed"]) for r in records) == [
        ("hinton", 0), ("hinton", 1), ("student-only", 0), ("student-only", 1)]
    assert all(r["status"] == "ok" for r in records)


@pytest.mark.parametrize("key", RECORD_KEYS)
def test_records_carry_required_key(smoke_run, key):
    out, _ = smoke_run
    for record in load_records([out]):
        if key == "git_sha":  # the commit the numbers came from; the tests run in a git checkout
            assert re.fullmatch(r"[0-9a-f]{40}", record["git_sha"]), record["git_sha"]
        else:
            assert _get(record, key) is not None


def test_record_speedup_is_teacher_over_student_latency(smoke_run):
    out, _ = smoke_run
    for r in load_records([out]):
        lat = r["latency_ms"]
        assert r["speedup_bs1"] == pytest.approx(lat["teacher_bs1"] / lat["student_bs1"])


def test_run_prints_results_table(smoke_run):
    _, stdout = smoke_run
    assert "mlp-hinton — smoke: teacher" in stdout
    assert re.search(r"^student-only +\d", stdout, re.M) and re.search(r"^hinton +\d", stdout, re.M)


def test_report_prints_the_table(smoke_run, cli_run, tmp_path):
    out, _ = smoke_run
    code, stdout, _ = cli_run("report", str(out))
    assert code == 0
    assert "Δ vs student-only" in stdout and re.search(r"^hinton +\d", stdout, re.M)
    code, stdout, _ = cli_run("report", str(out), "--output", str(tmp_path / "lb.md"))
    assert code == 0 and (tmp_path / "lb.md").read_text().startswith("# kdbench results")


def test_report_csv_has_a_row_per_method(smoke_run, cli_run):
    out, _ = smoke_run
    code, stdout, _ = cli_run("report", str(out), "--format", "csv")
    assert code == 0
    rows = [line.split(",") for line in stdout.splitlines()]
    assert sorted(row[rows[0].index("method")] for row in rows[1:]) == ["hinton", "student-only"]


def test_same_seed_gives_every_method_the_same_student_init(tmp_path, monkeypatch, registry):
    from kdbench import cell
    from kdbench.plan import Cell, RunConfig
    from kdbench.runner import Runner

    inits: dict[str, list[torch.Tensor]] = {}
    original = cell.init_student

    def spy(pair, teacher, num_classes, seed, place):
        student = original(pair, teacher, num_classes, seed, place)
        inits.setdefault(f"seed{seed}", []).append(torch.cat([p.detach().flatten().clone() for p in student.parameters()]))
        return student

    monkeypatch.setattr(cell, "init_student", spy)
    runner = Runner(registry, RunConfig(profile="smoke", out=tmp_path, progress=False, budget_steps=2))
    runner.run([Cell("mlp-hinton", m, s) for m in ("student-only", "hinton") for s in (0, 1)])
    for seed in ("seed0", "seed1"):
        a, b = inits[seed]
        assert torch.equal(a, b)
    assert not torch.equal(inits["seed0"][0], inits["seed1"][0])


def test_teacher_weights_unchanged_by_distillation(tmp_path, registry):
    from kdbench.plan import Cell, RunConfig
    from kdbench.worker import CellWorker, Task

    worker = CellWorker(RunConfig(profile="smoke", out=tmp_path, progress=False), registry)
    job = worker.job(Cell("mlp-hinton", "hinton", 0))
    teacher = job.teacher
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    record = worker(Task(job.cell, worker.head(job, worker.costs(job.prepared))))
    assert record["status"] == "ok"
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.model.training


def test_plugin_module_adds_a_method_without_installing(tmp_path, cli_run):
    plugin = tmp_path / "my_logit_mse.py"
    plugin.write_text(
        "import torch.nn.functional as F\n"
        "from kdbench import hookimpl, Method\n\n"
        "class LogitMSE(Method):\n"
        "    name = 'logit-mse'\n"
        "    needs = {'logits'}\n"
        "    defaults = {'weight': 1.0}\n\n"
        "    def loss(self, student, teacher, labels):\n"
        "        return {'ce': F.cross_entropy(student.logits, labels),\n"
        "                'mse': self.hp.weight * F.mse_loss(student.logits, teacher.logits)}\n\n"
        "@hookimpl\n"
        "def kdbench_methods():\n"
        "    return [LogitMSE]\n"
    )
    out = tmp_path / "runs"
    code, stdout, stderr = cli_run(
        "run", "--plugin", str(plugin), "--methods", "logit-mse", "--pairs", "mlp-hinton",
        "--profile", "smoke", "--set", "logit-mse.weight=0.5", "--out", str(out), "--quiet",
    )
    assert code == 0, stderr
    (record,) = load_records([out])
    assert record["method"] == "logit-mse" and record["status"] == "ok"
    assert record["hparams"] == {"weight": 0.5}
    assert set(record["terms"]) == {"ce", "mse"}


def test_list_shows_origin_and_description(cli_run):
    code, stdout, _ = cli_run("list", "methods")
    assert code == 0
    assert "hinton" in stdout and "[built-in]" in stdout


def test_record_files_are_json_with_identity_in_name(smoke_run):
    out, _ = smoke_run
    files = sorted(out.rglob("*.json"))
    assert len(files) == 4
    for f in files:
        record = json.loads(f.read_text())
        assert f.parent.name == record["method"] and f.name.startswith(f"seed{record['seed']}-")


def test_records_state_epochs_as_well_as_steps(smoke_run):
    out, _ = smoke_run
    for r in load_records([out]):
        train, examples = r["train"], r["scenario_info"]["train_examples"]
        assert train["epochs"] == pytest.approx(train["steps"] * train["batch_size"] / examples, abs=1e-3)
        assert (train["steps"], train["batch_size"], examples) == (30, 64, 2048)  # mlp-hinton at smoke
