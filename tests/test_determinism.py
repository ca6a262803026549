"""Issue 7: on CPU, the same command twice gives the same numbers, step by step."""
from __future__ import annotations

import pytest

from kdbench.results import load_records


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared by several test runs: one torch thread avoids thrashing."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _by_cell(out):
    return {(r["method"], r["seed"]): r for r in load_records([out])}


def test_same_smoke_command_twice_gives_identical_accuracies_and_losses(tmp_path, cli_run):
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        code, _, stderr = cli_run("run", "--methods", "student-only,hinton", "--pairs", "mlp-hinton",
                                  "--profile", "smoke", "--seeds", "2", "--budget-steps", "8",
                                  "--device", "cpu", "--out", str(out), "--quiet")
        assert code == 0, stderr
        runs.append(_by_cell(out))
    first, second = runs
    assert sorted(first) == sorted(second) == [("hinton", 0), ("hinton", 1), ("student-only", 0), ("student-only", 1)]
    for cell, a in first.items():
        b = second[cell]
        assert a["cell_id"] == b["cell_id"]
        assert len(a["losses"]) == a["train"]["steps"] == 8
        assert a["losses"] == b["losses"], cell
        assert a["terms"] == b["terms"], cell
        assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"], cell
        assert a["metrics"]["val_acc"] == b["metrics"]["val_acc"], cell
    # and the seed matters: otherwise "identical" would prove nothing
    assert first[("hinton", 0)]["losses"] != first[("hinton", 1)]["losses"]
