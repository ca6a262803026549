"""The `paper` profile: a dry-run plan without network, and the CIFAR ResNets as timm models."""
from __future__ import annotations

import timm
import torch

import kdbench_plugins.cifar_resnet  # noqa: F401 - registers the timm models


def test_paper_dry_run_prints_the_plan_and_writes_nothing(cli_run, tmp_path):
    out = tmp_path / "runs"
    code, stdout, stderr = cli_run("run", "--profile", "paper", "--dry-run", "--out", str(out))
    assert code == 0, stderr
    assert "cifar-resnet32x4 (dataset cifar-100)" in stdout
    assert "download: CIFAR-100" in stdout
    assert "teacher: 150000 steps" in stdout
    assert not out.exists()


def test_default_quick_grid_skips_pairs_without_the_profile(cli_run, tmp_path):
    code, stdout, _ = cli_run("run", "--dry-run", "--out", str(tmp_path / "r"))
    assert code == 0 and "cifar-resnet32x4" not in stdout and "mlp-hinton" in stdout


def test_named_pair_without_the_profile_is_a_one_line_error(cli_run, tmp_path):
    code, _, stderr = cli_run("run", "--pairs", "cifar-resnet32x4", "--out", str(tmp_path / "r"))
    assert code == 2 and stderr.count("\n") == 1 and "no profile 'quick'" in stderr


def test_cifar_resnets_are_timm_models_with_stage_maps():
    teacher = timm.create_model("cifar_resnet32x4", num_classes=100)
    student = timm.create_model("cifar_resnet8x4", num_classes=100)
    final, maps = student.forward_intermediates(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert student.forward_head(final).shape == (2, 100)
    n_t, n_s = (sum(p.numel() for p in m.parameters()) for m in (teacher, student))
    assert n_t > 5 * n_s  # published sizes: 7.4 M vs 1.2 M


def test_paper_dry_run_lists_the_sst2_bert_pair_and_its_downloads(cli_run, tmp_path):
    code, stdout, stderr = cli_run("run", "--profile", "paper", "--pairs", "bert-sst2-tiny4", "--dry-run",
                                   "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    assert "bert-sst2-tiny4 (dataset sst2)" in stdout
    assert "google-bert/bert-base-uncased" in stdout and "GLUE SST-2" in stdout


def test_sst2_student_has_tinybert4_shape_in_the_teachers_vocabulary():
    from transformers import BertConfig, BertForSequenceClassification

    from kdbench_plugins.bert_sst2 import BertSST2Tiny4

    teacher = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                                                       num_attention_heads=12, intermediate_size=96, num_labels=2))
    student = BertSST2Tiny4().build_student(teacher, 2)
    c = student.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (4, 312, 12, 1200)
    assert c.vocab_size == 30522 and c.num_labels == 2
    assert 14.0e6 < sum(p.numel() for p in student.parameters()) < 15.0e6  # TinyBERT-4: 14.5 M
