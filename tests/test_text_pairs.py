"""The MiniLM pairs: student initialisation and size, taps, padding trim, shared teacher."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, BertConfig, BertForSequenceClassification

from kdbench.taps import transformers_outputs
from kdbench_plugins.minilm import TEXT_SCHEDULES, MiniLMDistil3, MiniLMTiny4, distil_student, minilm_source, trim


def tiny_teacher(layers: int = 6) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=32, num_labels=5)
    return BertForSequenceClassification(config)


def padded_batch() -> dict[str, torch.Tensor]:
    mask = torch.tensor([[1] * 6 + [0] * 4, [1] * 3 + [0] * 7])
    ids = torch.randint(5, 60, mask.shape, generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_distil_student_keeps_layers_0_2_4_of_the_model_it_is_given():
    """`minilm-distil3` gives it the pre-trained MiniLM (tests/test_minilm_students.py)."""
    teacher = tiny_teacher()
    student = distil_student(teacher, (0, 2, 4))
    assert student.config.num_hidden_layers == 3
    t, s = teacher.state_dict(), student.state_dict()
    for i, j in enumerate((0, 2, 4)):
        prefix_s, prefix_t = f"bert.encoder.layer.{i}.", f"bert.encoder.layer.{j}."
        keys = [k for k in s if k.startswith(prefix_s)]
        assert keys
        for k in keys:
            assert torch.equal(s[k], t[prefix_t + k[len(prefix_s):]]), k
    for k in [k for k in s if not k.startswith("bert.encoder.")]:  # embeddings, pooler, classifier
        assert torch.equal(s[k], t[k]), k
    assert not student.get_input_embeddings().weight.requires_grad  # frozen, as in the teacher's fine-tuning


def test_distil_student_owns_its_weights():
    teacher = tiny_teacher()
    student = distil_student(teacher, (0, 2, 4))
    with torch.no_grad():
        next(student.bert.encoder.layer[0].parameters()).add_(1.0)
    assert not torch.equal(next(student.bert.encoder.layer[0].parameters()),
                           next(teacher.bert.encoder.layer[0].parameters()))


def test_tiny4_student_is_tinybert4_like_for_the_real_minilm():
    config = AutoConfig.from_pretrained(minilm_source(), num_labels=45)
    with torch.device("meta"):
        teacher = BertForSequenceClassification(config)
        student = MiniLMTiny4().build_student(teacher, 45)

    def non_embedding(model: torch.nn.Module) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n)

    sc = student.config
    assert (sc.num_hidden_layers, sc.hidden_size, sc.intermediate_size) == (4, 192, 768)
    assert sc.num_attention_heads == config.num_attention_heads and sc.vocab_size == config.vocab_size
    assert non_embedding(student) <= non_embedding(teacher) / 4


def test_tiny4_student_init_depends_on_the_seed_only():
    teacher = tiny_teacher()
    torch.manual_seed(3)
    a = MiniLMTiny4().build_student(teacher, 5)
    torch.manual_seed(3)
    b = MiniLMTiny4().build_student(teacher, 5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_attention_tap_is_pre_softmax_scores_of_the_eager_probabilities():
    teacher = tiny_teacher(layers=2).eval()
    teacher.config._attn_implementation = "eager"
    x = padded_batch()
    out = transformers_outputs(teacher, x, frozenset({"attentions"}))
    reference = teacher(**x, output_attentions=True).attentions
    keys = x["attention_mask"][:, None, None, :] == 0
    for scores, probs in zip(out.attentions, reference):
        assert scores.shape == probs.shape
        torch.testing.assert_close(torch.softmax(scores.masked_fill(keys, float("-inf")), -1), probs)


def test_trimmed_forward_equals_the_padded_one_at_real_tokens():
    teacher = tiny_teacher(layers=2).eval()
    x = padded_batch()
    needs = frozenset({"hidden_states", "embeddings", "attentions"})
    short = MiniLMTiny4().forward(teacher, x, needs)
    full = transformers_outputs(teacher, x, needs)
    assert short.mask.shape[1] == 6 == trim(x)["input_ids"].shape[1]
    torch.testing.assert_close(short.logits, full.logits)
    real = x["attention_mask"][:, :6].bool()
    torch.testing.assert_close(short.hidden_states[-1][real], full.hidden_states[-1][:, :6][real])


def test_both_pairs_share_one_teacher_recipe_per_profile():
    for profile in TEXT_SCHEDULES:
        assert MiniLMDistil3().teacher_recipe(profile) == MiniLMTiny4().teacher_recipe(profile)


def test_text_pairs_expose_the_transformer_taps(registry):
    for name in ("minilm-distil3", "minilm-tiny4"):
        assert registry.pair(name).obj.taps == {"logits", "hidden_states", "attentions", "embeddings"}


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_text_profiles_are_small(profile):
    s = TEXT_SCHEDULES[profile]
    assert s.extra["max_len"] <= 48 and s.train_limit is not None and s.eval_limit is not None


def test_tiny4_word_embeddings_are_the_teachers_principal_projection_frozen():
    teacher = tiny_teacher()
    table = teacher.get_input_embeddings().weight
    width = MiniLMTiny4().build_student(teacher, 5).get_input_embeddings().weight.shape[1]
    with torch.no_grad():  # a table of rank `width`: its projection loses nothing
        table.copy_(torch.randn(table.shape[0], width) @ torch.randn(width, table.shape[1]) + 0.5)
    emb = MiniLMTiny4().build_student(teacher, 5).get_input_embeddings().weight
    centred = table - table.mean(0, keepdim=True)
    assert not emb.requires_grad
    torch.testing.assert_close(emb @ emb.T, centred @ centred.T, atol=1e-3, rtol=1e-3)
