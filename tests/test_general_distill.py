"""General distillation: produced once per recipe, reused, verified, and never fed held-out text."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from kdbench import Schedule, TensorData, UsageError
from kdbench.taps import outputs
from kdbench.student_zoo import cached_body
from kdbench_plugins.general_distill import GeneralDistillation
from kdbench_plugins.minilm import MiniLMTiny4GD
from kdbench_plugins.wordnet_supersense import FRACTIONS, bucket, unlabelled_texts

SCHEDULE = Schedule(steps=3, teacher_steps=0, batch_size=4, lr=1e-3)
BODY = ("bert.embeddings.", "bert.encoder.")


def bert(layers: int, hidden: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=3)
    return BertForSequenceClassification(config)


def forward(model, inputs, needs):
    return outputs(model, inputs, frozenset(needs))


class Texts:
    """Unlabelled token batches; counts how often general distillation asked for them."""

    calls = 0

    def __call__(self) -> TensorData:
        self.calls += 1
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, 50, (12, 8), generator=g)
        return TensorData({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.zeros(12, dtype=torch.long))


def distilled(teacher, texts, recipe=None, seed=1):
    student = bert(2, 8, seed)
    card = cached_body(student, lambda: bert(2, 8, 123), GeneralDistillation(), teacher, forward, texts,
                       recipe or {"seed": 0, "arch": "2x8"}, name="tiny", keep=BODY, schedule=SCHEDULE)
    return student, card


def test_general_distillation_is_produced_once_and_reused_on_the_second_run():
    teacher, texts = bert(4, 16, 0).eval(), Texts()
    first, card1 = distilled(teacher, texts, {"seed": 0, "arch": "reuse"})
    second, card2 = distilled(teacher, texts, {"seed": 0, "arch": "reuse"})
    assert (card1["reused"], card2["reused"], texts.calls) == (False, True, 1)
    assert card1["sha256"] == card2["sha256"] and card1["seconds"] > 0 and card1["steps"] == 3
    for key, value in first.state_dict().items():
        if key.startswith(BODY):
            torch.testing.assert_close(value, second.state_dict()[key])


def test_general_distillation_with_a_bad_sha256_is_refused_in_one_line():
    teacher = bert(4, 16, 0).eval()
    _, card = distilled(teacher, Texts(), {"seed": 0, "arch": "corrupt"})
    weights = _folder_of(card) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UsageError) as info:
        distilled(teacher, Texts(), {"seed": 0, "arch": "corrupt"})
    message = str(info.value)
    assert "\n" not in message and "sha256" in message and "corrupt" in message and "delete" in message


def _folder_of(card) -> Path:
    from kdbench import kdbench_home

    return kdbench_home() / "students" / card["key"]


def test_only_the_body_is_distilled_the_head_stays_as_the_seed_made_it():
    teacher = bert(4, 16, 0).eval()
    student, _ = distilled(teacher, Texts(), {"seed": 0, "arch": "body"}, seed=7)
    fresh = bert(2, 8, 7)
    torch.testing.assert_close(student.classifier.weight, fresh.classifier.weight)
    torch.testing.assert_close(student.bert.pooler.dense.weight, fresh.bert.pooler.dense.weight)
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                           fresh.bert.encoder.layer[0].attention.self.query.weight)


def test_general_distillation_leaves_the_callers_random_state_alone():
    teacher, student = bert(4, 16, 0).eval(), bert(2, 8, 1)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    cached_body(student, lambda: bert(2, 8, 123), GeneralDistillation(), teacher, forward, Texts(),
                {"seed": 0, "arch": "rng"}, name="tiny", keep=BODY, schedule=SCHEDULE)
    assert torch.equal(before, torch.get_rng_state())


def test_a_different_teacher_is_a_different_artefact():
    texts = Texts()
    _, a = distilled(bert(4, 16, 0).eval(), texts, {"seed": 0, "arch": "teachers"})
    _, b = distilled(bert(4, 16, 1).eval(), texts, {"seed": 0, "arch": "teachers"})
    assert a["key"] != b["key"] and not b["reused"]


def _synset(offset: int, letter: str) -> str:
    return f"{offset:08d}-{letter}"


def _fake_wordnet(folder: Path) -> dict[str, list[str]]:
    """A WordNet database of a few synsets per split; returns each split's texts."""
    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    lines = {pos: [] for pos in ("noun", "verb", "adj", "adv")}
    offset = 1000
    while min(len(v) for v in by_split.values()) < 3:
        offset += 1
        b = bucket(_synset(offset, "n"))
        split = "train" if b < FRACTIONS[0] else "val" if b < FRACTIONS[1] else "test"
        if len(by_split[split]) >= 3:
            continue
        word = f"{split}word{len(by_split[split])}"
        gloss = f'{split} definition {offset}; "{split} example {offset}"'
        by_split[split].append(gloss)
        lines["noun"].append(f"{offset:08d} 05 n 01 {word} 0 000 | {gloss}  ")
    for pos, rows in lines.items():
        (folder / f"data.{pos}").write_text("  1 licence header\n" + "\n".join(rows) + "\n")
    return by_split


def test_unlabelled_text_comes_from_training_synsets_only(tmp_path):
    splits = _fake_wordnet(tmp_path)
    texts, fingerprint = unlabelled_texts(tmp_path)
    joined = "\n".join(texts)
    assert "val" not in joined and "test" not in joined
    assert all(g in texts for g in splits["train"])  # whole training glosses
    assert any(t.startswith("train definition") and '"' not in t for t in texts)  # definitions alone
    assert any(t.startswith("train example") for t in texts)  # examples alone
    assert "trainword0" in texts  # the synset's words
    assert fingerprint == hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def test_the_gd_pair_needs_its_profile_before_building_a_student():
    with pytest.raises(UsageError, match="profile"):
        MiniLMTiny4GD().build_student(bert(4, 16, 0), 3)
