"""Scenarios change the student's training data only, the same way for every method at a seed."""
from __future__ import annotations

import pytest
import torch

from kdbench import UsageError
from kdbench.api import TensorData
from kdbench.results import load_records
from kdbench.scenarios import get

NUM_CLASSES = 10
#: Unequal class sizes, so a uniform (non-stratified) draw would show in the proportions.
LABELS = torch.cat([torch.full((100 * (c + 1),), c) for c in range(NUM_CLASSES)])
TRAIN = TensorData(torch.arange(len(LABELS)).float().unsqueeze(1), LABELS)


def test_labels_subset_is_class_stratified():
    out = get("labels-10").apply(TRAIN, NUM_CLASSES, seed=0)
    counts = torch.bincount(out.data.y, minlength=NUM_CLASSES)
    assert counts.tolist() == [10 * (c + 1) for c in range(NUM_CLASSES)]
    assert torch.equal(TRAIN.y[out.indices], out.data.y)  # indices point into the full split
    assert torch.equal(TRAIN.x[out.indices], out.data.x)


def test_labels_subset_is_the_same_at_a_seed_and_differs_across_seeds():
    a, b = (get("labels-3").apply(TRAIN, NUM_CLASSES, seed=1) for _ in range(2))
    c = get("labels-3").apply(TRAIN, NUM_CLASSES, seed=2)
    assert torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, c.indices)


def test_noise_flips_exactly_n_percent_to_a_wrong_class():
    out = get("noise-40").apply(TRAIN, NUM_CLASSES, seed=0)
    flipped = out.data.y != TRAIN.y
    assert int(flipped.sum()) == round(0.4 * len(TRAIN))
    assert out.info["flipped"] == int(flipped.sum())
    assert torch.equal(out.data.x, TRAIN.x) and out.indices is None
    # wrong classes are spread over all the others, not a fixed shift
    shifts = (out.data.y[flipped] - TRAIN.y[flipped]) % NUM_CLASSES
    assert set(shifts.tolist()) == set(range(1, NUM_CLASSES))
    again = get("noise-40").apply(TRAIN, NUM_CLASSES, seed=0)
    assert torch.equal(again.data.y, out.data.y)
    assert not torch.equal(get("noise-40").apply(TRAIN, NUM_CLASSES, seed=1).data.y, out.data.y)


def test_scenarios_leave_the_input_split_untouched():
    y = TRAIN.y.clone()
    get("noise-40").apply(TRAIN, NUM_CLASSES, seed=0)
    assert torch.equal(TRAIN.y, y)


@pytest.mark.parametrize("name", ["labels-0", "noise-100", "labels", "clean", "weak-teacher-0"])
def test_unknown_or_impossible_scenarios_are_usage_errors(name):
    with pytest.raises(UsageError):
        get(name)


def test_weak_teacher_asks_for_a_fraction_of_the_teacher_steps():
    assert get("weak-teacher").teacher_steps_fraction == 0.1
    assert get("weak-teacher-25").teacher_steps_fraction == 0.25
    assert get("full").teacher_steps_fraction == 1.0


# -- end to end on the smoke profile -------------------------------------------------------

EVAL = 1000  # mlp-hinton's smoke eval_limit: val and test examples, whatever the scenario
GRID = ["run", "--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke",
        "--budget-steps", "6", "--quiet", "--scenario", "labels-3", "--scenario", "noise-40"]


@pytest.fixture(scope="module")
def regimes(tmp_path_factory):
    from click.testing import CliRunner

    from kdbench.cli import cli

    out = tmp_path_factory.mktemp("regimes")
    result = CliRunner().invoke(cli, [*GRID, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_each_scenario_is_a_cell_with_its_own_record(regimes):
    records = load_records([regimes])
    assert sorted((r["method"], r["scenario"]) for r in records) == [
        ("hinton", "labels-3"), ("hinton", "noise-40"), ("student-only", "labels-3"), ("student-only", "noise-40")]
    assert all(r["status"] == "ok" for r in records)
    for r in records:
        assert f"/{r['scenario']}/" in str(next(regimes.rglob(f"*{r['cell_id']}.json")))
        info = r["scenario_info"]
        assert (info["val_examples"], info["test_examples"]) == (EVAL, EVAL)  # the pair's, whatever the scenario
    noisy = {r["scenario_info"]["train_examples"] for r in records if r["scenario"] == "noise-40"}
    assert noisy == {2048}  # every example, some labels wrong
    small = {r["scenario_info"]["train_examples"] for r in records if r["scenario"] == "labels-3"}
    assert len(small) == 1 and 50 < small.pop() < 80  # 3% of 2048, stratified per class


def test_cached_teacher_logits_follow_the_label_subset(regimes, tmp_path, cli_run):
    code, _, err = cli_run(*GRID, "--methods", "hinton", "--no-teacher-cache", "--out", str(tmp_path))
    assert code == 0, err
    live = {r["scenario"]: r for r in load_records([tmp_path])}
    cached = {r["scenario"]: r for r in load_records([regimes]) if r["method"] == "hinton"}
    for name in ("labels-3", "noise-40"):
        assert live[name]["train"]["teacher"] == "live" and cached[name]["train"]["teacher"] == "cached"
        assert live[name]["losses"] == cached[name]["losses"]


def test_old_records_without_a_scenario_keep_their_identity():
    from kdbench.results import cell_id, record_path

    identity = {"pair": "p", "method": "m", "seed": 0, "profile": "smoke", "budget": {}, "hparams": {},
                "teacher_sha256": "a"}
    assert cell_id(identity) == cell_id({**identity, "scenario": "full"})
    assert record_path("out", identity) == record_path("out", {**identity, "scenario": "full"})
    assert cell_id({**identity, "scenario": "noise-40"}) != cell_id(identity)
