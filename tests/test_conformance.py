"""The conformance kit `kdbench.testing`: built-in plugins pass it; broken ones fail it by rule."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench import Method
from kdbench.losses import soft_kl
from kdbench.testing import ConformanceError, check_method, check_pair
from kdbench_plugins.mlp_hinton import MLPHinton, mlp
from kdbench_plugins.resnet_cnn import ResNetCNN

#: Cheapest pairs first: each built-in method is checked on the first pair that exposes its taps.
PAIR_PREFERENCE = ["mlp-hinton", "resnet-cnn", "vit-cnn", "minilm-tiny4", "minilm-distil3"]


def _builtins(registry, kind: str) -> list[str]:
    """Built-in methods, or built-in pairs that have a smoke profile (paper-only pairs need internet)."""
    return sorted(n for n, e in getattr(registry, kind).items()
                  if e.origin == "built-in" and (kind == "methods" or "smoke" in e.obj.schedules))


def _registry():
    from kdbench.plugins import load_registry

    return load_registry()


def _pair_for(registry, method: str) -> str:
    needs = set(registry.method(method).obj.needs) - {"logits"}
    names = sorted(_builtins(registry, "pairs"),
                   key=lambda p: (PAIR_PREFERENCE.index(p) if p in PAIR_PREFERENCE else 99, p))
    for name in names:
        if needs <= set(registry.pair(name).obj.taps):
            return name
    pytest.fail(f"no built-in pair exposes the taps {sorted(needs)} that method {method!r} needs")


@pytest.mark.parametrize("method", _builtins(_registry(), "methods"))
def test_builtin_method_passes_the_kit(method, registry):
    """Every rule but `end-to-end`: each built-in method's smoke cells already run through the
    runner in its own track's tests (foundation, vision, text), so the suite does not pay twice.
    The rule itself is exercised on every built-in pair below, on dkd and on the guide's method."""
    pair = _pair_for(registry, method)
    report = check_method(method, pair=pair, registry=registry, end_to_end=False)
    assert report.passed[-1] == "deterministic"
    assert {"finite-scalar-terms", "student-gradients", "teacher-no-gradients", "teacher-unchanged",
            "undeclared-taps", "adapter-gradients"} <= set(report.passed)


@pytest.mark.parametrize("pair", _builtins(_registry(), "pairs"))
def test_builtin_pair_passes_the_kit(pair, registry):
    report = check_pair(pair, registry=registry)
    assert {"taps", "separate-weights", "teacher-unchanged", "end-to-end"} <= set(report.passed)
    assert report.record["status"] == "ok" and report.record["pair"] == pair


# -- methods broken on purpose -----------------------------------------------------------------
class TeacherLearns(Method):
    """Broken: makes the teacher's logits trainable, so the KD gradient flows into the teacher."""

    name = "teacher-learns"

    def loss(self, student, teacher, labels):
        teacher.logits.requires_grad_(True)
        return {"ce": F.cross_entropy(student.logits, labels), "kd": soft_kl(student.logits, teacher.logits, 4.0)}


class PerExampleLoss(Method):
    """Broken: returns the unreduced per-example cross-entropy."""

    name = "per-example"

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels, reduction="none")}


def _fail(rule: str, *args, **kwargs) -> str:
    check = kwargs.pop("check", check_method)
    with pytest.raises(ConformanceError) as info:
        check(*args, end_to_end=kwargs.pop("end_to_end", False), **kwargs)
    assert info.value.rule == rule, str(info.value)
    assert f"conformance rule {rule!r}" in str(info.value)
    return str(info.value)


def test_kit_fails_a_method_whose_gradients_reach_the_teacher(registry):
    msg = _fail("teacher-no-gradients", TeacherLearns, pair="mlp-hinton", registry=registry)
    assert "method 'teacher-learns' on pair 'mlp-hinton'" in msg and "teacher's outputs ['logits']" in msg


def test_kit_fails_a_loss_that_returns_a_non_scalar(registry):
    msg = _fail("finite-scalar-terms", PerExampleLoss, pair="mlp-hinton", registry=registry)
    assert "loss term 'ce' has shape (16,), not a scalar" in msg


class SharesTeacherLayer(MLPHinton):
    """Broken pair: the student reuses (not copies) the teacher's first layer and unfreezes it."""

    name = "shares-teacher-layer"

    def build_student(self, teacher, num_classes):
        student = mlp(1200, num_classes)
        student[2] = teacher[2]
        for p in student.parameters():
            p.requires_grad_(True)
        return student


def test_kit_fails_a_method_run_where_teacher_weights_get_gradients(registry):
    from kdbench_plugins.hinton import Hinton

    msg = _fail("teacher-no-gradients", Hinton, pair=SharesTeacherLayer, registry=registry)
    assert "teacher parameters ['2.weight', '2.bias']" in msg


def test_kit_fails_a_pair_whose_student_shares_teacher_weights(registry):
    msg = _fail("separate-weights", SharesTeacherLayer, check=check_pair, registry=registry)
    assert "student parameters ['2.weight', '2.bias'] share storage with the teacher" in msg


class TrainModeTeacher(ResNetCNN):
    """Broken pair: its forward puts every model in train mode (batch-norm statistics move)."""

    name = "train-mode-teacher"

    def forward(self, model, inputs, needs):
        model.train()
        return super().forward(model, inputs, needs)


def test_kit_fails_a_pair_that_changes_the_teacher(registry):
    msg = _fail("teacher-unchanged", TrainModeTeacher, check=check_pair, registry=registry)
    assert "batch-norm" in msg or "train mode" in msg


class ReadsFeaturesSecretly(Method):
    name = "reads-features"

    def loss(self, student, teacher, labels):
        extra = student.features[-1].pow(2).mean() if student.features is not None else 0.0
        return {"ce": F.cross_entropy(student.logits, labels) + 0.0 * extra}


def test_kit_fails_a_method_that_reads_an_undeclared_tap(registry):
    msg = _fail("undeclared-taps", ReadsFeaturesSecretly, pair="resnet-cnn", registry=registry)
    assert "reads the student's ['features'] but needs = ['logits']" in msg


class PythonRandom(Method):
    name = "python-random"

    def loss(self, student, teacher, labels):
        return {"ce": (1.0 + random.random()) * F.cross_entropy(student.logits, labels)}


def test_kit_fails_a_method_that_is_not_deterministic(registry):
    assert "two runs with seed 0" in _fail("deterministic", PythonRandom, pair="mlp-hinton", registry=registry)


class UnusedAdapter(Method):
    name = "unused-adapter"

    def adapters(self, student, teacher):
        self.proj = nn.Linear(student.logits.shape[1], teacher.logits.shape[1])
        return self.proj

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels), "kd": soft_kl(student.logits, teacher.logits, 4.0)}


def test_kit_fails_adapters_that_never_get_gradients(registry):
    msg = _fail("adapter-gradients", UnusedAdapter, pair="mlp-hinton", registry=registry)
    assert "['weight', 'bias'] never receive a gradient" in msg


class EditsTeacherLogits(Method):
    name = "edits-teacher"

    def loss(self, student, teacher, labels):
        t = teacher.logits.div_(2.0)  # in place: corrupts shared or cached teacher outputs
        return {"kd": soft_kl(student.logits, t, 1.0)}


def test_kit_fails_a_method_that_edits_teacher_outputs_in_place(registry):
    assert "in place" in _fail("teacher-unchanged", EditsTeacherLogits, pair="mlp-hinton", registry=registry)


class NaNTerm(Method):
    name = "nan-term"

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels), "bad": torch.log(torch.tensor(-1.0))}


def test_kit_fails_a_non_finite_term(registry):
    assert "loss term 'bad' is nan" in _fail("finite-scalar-terms", NaNTerm, pair="mlp-hinton", registry=registry)


class NeedsFeatures(Method):
    name = "needs-features"
    needs = frozenset({"logits", "features"})

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels)}


def test_kit_fails_a_method_on_a_pair_without_its_taps(registry):
    assert "does not expose" in _fail("compatible", NeedsFeatures, pair="mlp-hinton", registry=registry)


class UnknownTap(Method):
    name = "unknown-tap"
    needs = frozenset({"logits", "hiddens"})

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels)}


def test_kit_fails_a_declaration_with_an_unknown_tap(registry):
    assert "unknown taps ['hiddens']" in _fail("declaration", UnknownTap, pair="mlp-hinton", registry=registry)


class FixedBatch(Method):
    """Broken: a hard-coded batch size of 16 — fine in the probes, fatal in a real cell."""

    name = "fixed-batch"

    def loss(self, student, teacher, labels):
        weights = torch.ones(16)
        return {"ce": (F.cross_entropy(student.logits, labels, reduction="none") * weights).mean()}


def test_kit_fails_a_method_whose_smoke_cell_fails(registry):
    msg = _fail("end-to-end", FixedBatch, pair="mlp-hinton", registry=registry, end_to_end=True)
    assert "the smoke cell mlp-hinton/fixed-batch/seed0 failed: RuntimeError" in msg


def test_kit_accepts_a_method_class_that_is_not_installed(registry):
    from kdbench_plugins.hinton import Hinton

    class SoftOnly(Hinton):
        """Hinton with α = 0: soft targets only."""

        name = "soft-only"
        defaults = {"temperature": 4.0, "alpha": 0.0}

    report = check_method(SoftOnly, pair="mlp-hinton", registry=registry, hparams={"temperature": 2.0},
                          end_to_end=False)
    assert "deterministic" in report.passed and "soft-only" not in registry.methods


def test_kit_notes_a_declared_tap_that_is_never_read(registry):
    report = check_method(NeedsFeatures, pair="resnet-cnn", registry=registry, end_to_end=False)
    assert report.notes == ["declares ['features'] in needs but never reads them; every declared tap is computed "
                            "for student and teacher at each step"]
    assert "note: declares ['features']" in str(report)
