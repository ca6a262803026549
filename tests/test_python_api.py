"""docs/python.md runs, and the Python API returns what the records on disk say."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Every python block of the page, in order, in one namespace, run in a fresh folder."""
    folder = tmp_path_factory.mktemp("python-api")
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(folder)
    try:
        for block in re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M):
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the page is ours
    finally:
        os.chdir(here)
    return folder, namespace


def test_the_page_runs_and_draws_its_plot(session):
    folder, ns = session
    assert (folder / "delta.png").stat().st_size > 0
    assert set(ns["table"]["method"]) == {"student-only", "hinton"}


def test_run_returns_the_records_it_wrote(session):
    folder, ns = session
    on_disk = {(r["method"], r["seed"]): r["metrics"]["test_acc"]
               for r in (json.loads(p.read_text()) for p in (folder / "runs" / "notebook").rglob("*.json"))}
    returned = {(m, s): a for m, s, a in ns["records"][["method", "seed", "metrics.test_acc"]].itertuples(index=False)}
    assert returned == on_disk and len(on_disk) == 4


def test_summary_numbers_are_numbers_and_match_the_records(session):
    _, ns = session
    table, records = ns["table"], ns["records"]
    hinton = table[table["method"] == "hinton"].iloc[0]
    acc = records[records["method"] == "hinton"]["metrics.test_acc"]
    assert hinton["mean"] == pytest.approx(acc.mean() * 100, abs=1e-4) and hinton["n"] == 2  # 4 decimals
    by_seed = records.pivot(index="seed", columns="method", values="metrics.test_acc")
    assert hinton["delta"] == pytest.approx((by_seed["hinton"] - by_seed["student-only"]).mean() * 100, abs=1e-4)
    for column in ("mean", "sd", "delta", "ci_low", "ci_high", "student_params", "speedup_bs1"):
        assert table[column].dtype.kind in "fi", column
