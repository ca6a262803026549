"""The text track through the CLI: refused combinations, and the smoke grid end to end."""
from __future__ import annotations

import json

import pytest


def test_tinybert_on_a_vision_pair_fails_before_training_naming_the_taps(cli_run, tmp_path, kdbench_home):
    out = tmp_path / "runs"
    teachers = set((kdbench_home / "teachers").glob("*"))
    code, _, stderr = cli_run("run", "--methods", "tinybert", "--pairs", "resnet-cnn", "--out", str(out))
    assert code == 2 and stderr.count("\n") == 1
    assert "'tinybert'" in stderr and "'resnet-cnn'" in stderr
    assert all(tap in stderr for tap in ("attentions", "embeddings", "hidden_states"))
    assert not out.exists() and set((kdbench_home / "teachers").glob("*")) == teachers  # nothing trained


@pytest.mark.integration
def test_smoke_grid_of_the_text_track_writes_eight_ok_records(cli_run, tmp_path):
    out = tmp_path / "text"
    code, stdout, stderr = cli_run("run", "--methods", "student-only,hinton,distilbert,tinybert",
                                   "--pairs", "minilm-tiny4,minilm-distil3", "--profile", "smoke",
                                   "--out", str(out), "--quiet")
    assert code == 0, stderr
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    records = [r for r in records if "cell_id" in r]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    by = {(r["pair"], r["method"]): r for r in records}
    assert by[("minilm-tiny4", "distilbert")]["params"]["adapters"] > 0  # 192 → 384 projection
    assert "cos_proj" in by[("minilm-tiny4", "distilbert")]["terms"]
    assert by[("minilm-distil3", "distilbert")]["params"]["adapters"] == 0  # same width: none
    assert by[("minilm-tiny4", "tinybert")]["terms"].keys() == {"pred"}  # ends in the prediction stage
    teacher_acc = {r["metrics"]["teacher_test_acc"] for r in records}
    assert len(teacher_acc) == 1  # one fine-tuned teacher shared by both pairs
