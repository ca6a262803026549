"""`tinybert` runs its two stages as separate trainings with its authors' per-stage recipe."""
from __future__ import annotations

import pytest

from kdbench_plugins.tinybert import TinyBERT


def test_tinybert_declares_two_trainings_with_the_official_recipe():
    first, second = TinyBERT().phases()
    assert (first.name, first.schedule, first.lr_scale) == ("intermediate", "constant", 1.0)
    assert (second.name, second.schedule, second.warmup) == ("prediction", "linear", 0.1)
    assert second.lr_scale == pytest.approx(3e-5 / 5e-5)
    assert first.fraction == pytest.approx(10 / 13) and first.fraction + second.fraction == pytest.approx(1.0)


def test_every_tinybert_default_names_its_source():
    assert set(TinyBERT.defaults) <= set(TinyBERT.sources)
    assert {"layer_map", "pred_scaling", "student_init"} <= set(TinyBERT.sources)
    assert all(isinstance(v, str) and v for v in TinyBERT.sources.values())


def test_tinybert_stage_fraction_moves_the_phase_boundary():
    first, second = TinyBERT(stage1_fraction=0).phases()
    assert first.fraction == 0 and second.fraction == 1
    method = TinyBERT(stage1_fraction=0.25)
    assert [p.fraction for p in method.phases()] == [0.25, 0.75]
