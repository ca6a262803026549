"""The vision track end to end on the smoke profile: records, adapters counted apart, teacher frozen."""
from __future__ import annotations

import pytest
import torch

from kdbench.measure import count_params

pytestmark = pytest.mark.integration


def test_vit_cnn_cells_count_adapters_apart_from_the_student(tmp_path, registry):
    from kdbench.runner import Cell, RunConfig, Runner

    runner = Runner(registry, RunConfig(profile="smoke", out=tmp_path, progress=False, budget_steps=2))
    summary = runner.run([Cell("vit-cnn", m, 0) for m in ("student-only", "hinton", "fitnet", "ofa")])
    records = {r["method"]: r for r in summary.records}
    assert {r["status"] for r in records.values()} == {"ok"}
    torch.manual_seed(0)
    student = registry.pair("vit-cnn").obj().build_student(None, 10)
    assert {r["params"]["student"] for r in records.values()} == {count_params(student)}
    assert records["student-only"]["params"]["adapters"] == records["hinton"]["params"]["adapters"] == 0
    assert records["fitnet"]["params"]["adapters"] == 32 * 128 * 9 + 128  # 3×3 conv, layer2 → ViT block
    assert records["ofa"]["params"]["adapters"] > 0
    assert set(records["ofa"]["terms"]) == {"ce", "kd", "ofa"}
    assert set(records["fitnet"]["terms"]) == {"ce", "hint"}
    assert records["ofa"]["metrics"]["teacher_test_acc"] == records["hinton"]["metrics"]["teacher_test_acc"]


@pytest.mark.parametrize("pair_name", ["vit-cnn", "resnet-cnn"])
def test_teacher_is_unchanged_by_feature_distillation(pair_name, tmp_path, registry):
    from kdbench.runner import Cell, RunConfig, Runner

    runner = Runner(registry, RunConfig(profile="smoke", out=tmp_path, progress=False, budget_steps=3))
    pair = registry.pair(pair_name).obj()
    splits = runner.data(pair)
    teacher = runner.teacher(pair, splits)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}  # BN running stats too
    costs = runner.costs(pair, teacher, splits)
    for method in ("fitnet", "ofa"):
        cell = Cell(pair_name, method, 0)
        record = runner.run_cell(cell, pair, splits, teacher, costs, runner.identity(cell, pair, teacher.sha256))
        assert record["status"] == "ok", record.get("error")
        assert record["train"]["teacher"] == "live"
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
