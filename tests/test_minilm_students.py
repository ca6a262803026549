"""The MiniLM students start from the pre-trained model, never from the fine-tuned teacher:
DistilBERT initialises from the pre-trained teacher's layers, and TinyBERT's general
distillation uses the pre-trained model as its teacher."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def fine_tuned(registry):
    """The pre-trained MiniLM with one layer changed, as fine-tuning would change it."""
    pair = registry.pair("minilm-distil3").obj()
    torch.manual_seed(0)
    teacher = pair.build_teacher(45)
    with torch.no_grad():
        teacher.bert.encoder.layer[2].output.dense.weight.add_(1.0)
    return teacher


def test_distil3_copies_pretrained_layers_not_the_fine_tuned_teachers(registry, fine_tuned):
    pair = registry.pair("minilm-distil3").obj()
    torch.manual_seed(0)
    student = pair.build_student(fine_tuned, 45)
    pretrained = pair.pretrained(45, seed=0)
    copied = student.bert.encoder.layer[1].output.dense.weight  # student layer 1 = layer 2
    assert torch.equal(copied, pretrained.bert.encoder.layer[2].output.dense.weight)
    assert not torch.equal(copied, fine_tuned.bert.encoder.layer[2].output.dense.weight)


def test_general_distillation_does_not_depend_on_the_fine_tuned_teacher(registry, fine_tuned, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    pair = registry.pair("minilm-tiny4-gd").obj()
    pair.dataset_options("smoke")
    torch.manual_seed(0)
    pair.build_student(fine_tuned, 45)
    first = pair.student_card
    torch.manual_seed(0)
    pair.build_student(pair.pretrained(45, seed=1), 45)  # another "fine-tuned teacher"
    assert pair.student_card["key"] == first["key"] and pair.student_card["reused"] is True


@pytest.mark.parametrize("progress", [True, False])
def test_general_distillation_shows_its_bar_unless_the_run_is_quiet(registry, fine_tuned, tmp_path, monkeypatch,
                                                                     capfd, progress):
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path))
    pair = registry.pair("minilm-tiny4-gd").obj()
    pair.dataset_options("smoke")
    pair.progress = progress  # what the runner sets from --quiet
    torch.manual_seed(0)
    pair.build_student(fine_tuned, 45)
    assert pair.student_card["reused"] is False
    assert ("student body" in capfd.readouterr().err) is progress
