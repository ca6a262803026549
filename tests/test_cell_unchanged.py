"""The runner split changed where a cell's steps live, not what they compute.

`fixtures/smoke_grid.json` holds the smoke grid (every built-in method × compatible
pair, 2 seeds, one thread per cell) as the code before the split computed it. On the
CPU it was recorded on, every accuracy and per-step loss must match to the last digit;
elsewhere (another CPU's kernels round differently) to a tight tolerance.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "smoke_grid.json"


@pytest.fixture(scope="module")
def grid(registry, tmp_path_factory):
    """The fixture's grid with teachers of its own, trained at the fixture's thread count."""
    import torch

    from kdbench.plan import RunConfig, plan
    from kdbench.runner import Runner

    expected = _expected()[1]
    pairs, methods = sorted({c["pair"] for c in expected}), sorted({c["method"] for c in expected})
    cells = [c for c in plan(registry, methods, None, seeds=2, profile="smoke") if c.pair in pairs]
    # the teacher live for every method, as the fixture's code ran all but the logits-only ones
    # (a live teacher gives logits-only methods the same losses as the cache: test_executors)
    config = RunConfig(profile="smoke", out=tmp_path_factory.mktemp("grid"), progress=False, threads=1,
                       teacher_cache=False, zoo_root=tmp_path_factory.mktemp("zoo"))
    before = torch.get_num_threads()
    torch.set_num_threads(_expected()[0]["teacher_threads"])  # teachers train in the driver
    try:
        summary = Runner(registry, config).run(cells)
    finally:
        torch.set_num_threads(before)
    return {(r["pair"], r["method"], r["seed"]): r for r in summary.records}


def _expected() -> tuple[dict, list[dict]]:
    doc = json.loads(FIXTURE.read_text())
    return doc["host"], doc["cells"]


def test_the_grid_has_the_fixture_cells(grid):
    _, cells = _expected()
    assert sorted(grid) == sorted((c["pair"], c["method"], c["seed"]) for c in cells)
    assert all(r["status"] == "ok" for r in grid.values())


@pytest.mark.parametrize("cell", _expected()[1], ids=lambda c: f"{c['pair']}/{c['method']}/seed{c['seed']}")
def test_cell_computes_what_it_did_before_the_split(grid, cell):
    host, _ = _expected()
    record = grid[(cell["pair"], cell["method"], cell["seed"])]
    assert record["params"]["adapters"] == cell["adapters"]
    got = {"test_acc": record["metrics"]["test_acc"], "val_acc": record["metrics"]["val_acc"],
           "losses": record["losses"], "terms": record["terms"]}
    want = {k: cell[k] for k in got}
    if record["host"]["cpu"] == host["cpu"]:  # same kernels: the same teacher, the same numbers, bit for bit
        assert record["cell_id"] == cell["cell_id"]  # same identity: old records still resume
        assert record["teacher_sha256"] == cell["teacher_sha256"]
        assert got == want
    else:
        for key in ("test_acc", "val_acc", "losses"):
            assert got[key] == pytest.approx(want[key], rel=1e-3, abs=1e-3), key
