"""The vision track end to end on the smoke profile: records, adapters counted apart, teacher frozen."""
from __future__ import annotations

import pytest
import torch

from kdbench.measure import count_params

pytestmark = pytest.mark.integration


def test_vit_cnn_cells_count_adapters_apart_from_the_student(tmp_path, registry):
    from kdbench.plan import Cell, RunConfig
    from kdbench.runner import Runner

    runner = Runner(registry, RunConfig(profile="smoke", out=tmp_path, progress=False, budget_steps=2))
    summary = runner.run([Cell("vit-cnn", m, 0) for m in ("student-only", "hinton", "fitnet", "ofa")])
    records = {r["method"]: r for r in summary.records}
    assert {r["status"] for r in records.values()} == {"ok"}
    torch.manual_seed(0)
    student = registry.pair("vit-cnn").obj().build_student(None, 10)
    assert {r["params"]["student"] for r in records.values()} == {count_params(student)}
    assert records["student-only"]["params"]["adapters"] == records["hinton"]["params"]["adapters"] == 0
    assert records["fitnet"]["params"]["adapters"] == 16 * 128 * 9 + 128  # 3×3 conv, layer2 → ViT block
    assert records["ofa"]["params"]["adapters"] > 0
    assert set(records["ofa"]["terms"]) == {"ce", "kd", "ofa"}
    assert set(records["fitnet"]["terms"]) == {"ce", "hint"}
    assert records["ofa"]["metrics"]["teacher_test_acc"] == records["hinton"]["metrics"]["teacher_test_acc"]


@pytest.mark.parametrize("pair_name", ["vit-cnn", "resnet-cnn"])
def test_teacher_is_unchanged_by_feature_distillation(pair_name, tmp_path, registry):
    from kdbench.plan import Cell, RunConfig
    from kdbench.worker import CellWorker, Task

    worker = CellWorker(RunConfig(profile="smoke", out=tmp_path, progress=False, budget_steps=3,
                                  teacher_cache=False), registry)  # the teacher runs live, beside the student
    teacher = worker.pair(pair_name).teacher
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}  # BN running stats too
    costs = worker.costs(worker.pair(pair_name))
    for method in ("fitnet", "ofa"):
        job = worker.job(Cell(pair_name, method, 0))
        record = worker(Task(job.cell, worker.head(job, costs)))
        assert record["status"] == "ok", record.get("error")
        assert record["train"]["teacher"] == "live"
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
