"""DistilBERT and TinyBERT losses: each term against a hand computation, padding, gradients."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from kdbench import Outputs
from kdbench_plugins.distilbert import DistilBERT
from kdbench_plugins.minilm import MiniLMDistil3, MiniLMTiny4
from kdbench_plugins.tinybert import TinyBERT, layer_map


def softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def tiny_teacher(layers: int = 6, hidden: int = 24, heads: int = 4, labels: int = 5) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=labels)
    return BertForSequenceClassification(config)


def batch(lengths: tuple[int, ...] = (7, 4, 2), width: int = 9) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (len(lengths), width), generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return {"input_ids": ids * mask, "attention_mask": mask}, torch.tensor([0, 3, 1])


# -- DistilBERT ---------------------------------------------------------------------------

S_LOGITS, T_LOGITS, LABEL = [1.0, 2.0, 0.0], [0.5, 1.5, -1.0], 2
MASK = [1, 1, 0]
S_HID = [[1.0, 0.0], [1.0, 1.0], [5.0, -7.0]]  # the third token is padding
T_HID = [[1.0, 1.0], [2.0, 2.0], [-3.0, 9.0]]


def distil_outputs(s_pad: list[float] | None = None) -> tuple[Outputs, Outputs]:
    s_hid = [*S_HID[:2], s_pad or S_HID[2]]
    mask = torch.tensor([MASK])
    s = Outputs(logits=torch.tensor([S_LOGITS]), hidden_states=[torch.tensor([s_hid])], mask=mask)
    t = Outputs(logits=torch.tensor([T_LOGITS]), hidden_states=[torch.tensor([T_HID])], mask=mask)
    return s, t


def test_distilbert_terms_match_a_hand_computation():
    method = DistilBERT()
    s, t = distil_outputs()
    assert method.adapters(s, t) is None  # equal widths: no projection
    terms = method.loss(s, t, torch.tensor([LABEL]))
    temp = 2.0
    p_s, p_t = softmax([x / temp for x in S_LOGITS]), softmax([x / temp for x in T_LOGITS])
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    ce = -math.log(softmax(S_LOGITS)[LABEL])
    cos = ((1 - cosine(S_HID[0], T_HID[0])) + (1 - cosine(S_HID[1], T_HID[1]))) / 2
    assert set(terms) == {"ce", "task", "cos"}
    assert terms["ce"].item() == pytest.approx(5.0 * temp**2 * kl, rel=1e-4)  # float32
    assert terms["task"].item() == pytest.approx(2.0 * ce, rel=1e-5)
    assert terms["cos"].item() == pytest.approx(1.0 * cos, rel=1e-5)


def test_distilbert_ignores_padding_tokens():
    method = DistilBERT()
    a = method.loss(*distil_outputs(), torch.tensor([LABEL]))
    b = method.loss(*distil_outputs(s_pad=[-100.0, 3.0]), torch.tensor([LABEL]))
    assert a["cos"].item() == b["cos"].item()


def test_distilbert_projects_when_widths_differ_and_says_so():
    method = DistilBERT()
    s = Outputs(logits=torch.zeros(2, 3), hidden_states=[torch.randn(2, 4, 8)], mask=torch.ones(2, 4))
    t = Outputs(logits=torch.zeros(2, 3), hidden_states=[torch.randn(2, 4, 16)], mask=torch.ones(2, 4))
    proj = method.adapters(s, t)
    assert isinstance(proj, torch.nn.Linear) and (proj.in_features, proj.out_features) == (8, 16)
    assert "cos_proj" in method.loss(s, t, torch.tensor([0, 1]))


# -- TinyBERT -----------------------------------------------------------------------------

def tiny_outputs(pad: float = 0.0) -> tuple[Outputs, Outputs]:
    """1 example, 3 tokens (the last is padding), width 2, one head; 2 student / 4 teacher layers."""
    mask = torch.tensor([[1, 1, 0]])

    def seq(a: float, b: float) -> torch.Tensor:
        return torch.tensor([[[a, b], [b, a], [pad, -pad]]])

    def att(v: float) -> torch.Tensor:
        m = torch.tensor([[v, 1.0, pad], [2.0, v, pad], [pad, pad, pad]])
        return m[None, None]

    s = Outputs(logits=torch.tensor([[0.0, 1.0]]), embeddings=seq(1.0, 2.0),
                hidden_states=[seq(0.0, 1.0), seq(2.0, 2.0)], attentions=[att(0.0), att(1.0)], mask=mask)
    t = Outputs(logits=torch.tensor([[2.0, 0.0]]), embeddings=seq(0.0, 0.0),
                hidden_states=[seq(9.0, 9.0), seq(1.0, 1.0), seq(9.0, 9.0), seq(3.0, 1.0)],
                attentions=[att(9.0), att(2.0), att(9.0), att(4.0)], mask=mask)
    t.mask = mask
    return s, t


def test_tinybert_layer_map_is_m_times_n_over_m():
    assert layer_map(4, 12) == [2, 5, 8, 11]  # the paper's g(m) = 3m, 0-based
    assert layer_map(3, 6) == [1, 3, 5]
    assert layer_map(4, 6) == [0, 2, 3, 5]  # floor(1.5), 3, floor(4.5), 6


def test_tinybert_stage1_terms_match_a_hand_computation():
    method = TinyBERT()
    s, t = tiny_outputs()
    assert method.adapters(s, t) is None
    method.progress = 0.1
    terms = method.loss(s, t, torch.tensor([0]))
    # real tokens: (a, b), (b, a); squared errors averaged over 2 tokens × 2 dims
    emb = ((1 - 0) ** 2 + (2 - 0) ** 2) * 2 / 4
    # layer map (2 → 4): student 0 ↔ teacher 1, student 1 ↔ teacher 3
    hidden = ((0 - 1) ** 2 + (1 - 1) ** 2) * 2 / 4 + ((2 - 3) ** 2 + (2 - 1) ** 2) * 2 / 4
    # real (query, key) pairs: the 2×2 top-left block; diagonal differs by (v_s − v_t)
    attn = ((0 - 2) ** 2 * 2) / 4 + ((1 - 4) ** 2 * 2) / 4
    assert set(terms) == {"emb", "attn", "hidden"}
    assert terms["emb"].item() == pytest.approx(emb)
    assert terms["hidden"].item() == pytest.approx(hidden)
    assert terms["attn"].item() == pytest.approx(attn)


def test_tinybert_stage2_is_soft_cross_entropy():
    method = TinyBERT(temperature=2.0)
    s, t = tiny_outputs()
    method.progress = 0.8  # past stage1_fraction (10/13): the prediction layer
    terms = method.loss(s, t, torch.tensor([0]))
    p_t, p_s = softmax([2.0 / 2, 0.0]), softmax([0.0, 1.0 / 2])
    assert set(terms) == {"pred"}
    assert terms["pred"].item() == pytest.approx(-sum(a * math.log(b) for a, b in zip(p_t, p_s)), rel=1e-5)


def test_tinybert_ignores_padding_tokens():
    method = TinyBERT()
    method.progress = 0.0
    a = method.loss(*tiny_outputs(pad=0.0), torch.tensor([0]))
    b = method.loss(*tiny_outputs(pad=1e3), torch.tensor([0]))
    for k in a:
        assert a[k].item() == b[k].item(), k


def test_tinybert_refuses_different_head_counts():
    from kdbench import UsageError

    s, t = tiny_outputs()
    t.attentions = [a.expand(1, 2, 3, 3) for a in t.attentions]
    with pytest.raises(UsageError, match="heads"):
        TinyBERT().adapters(s, t)


# -- through real (tiny, random) BERTs -----------------------------------------------------

@pytest.mark.parametrize("pair_cls", [MiniLMDistil3, MiniLMTiny4])
@pytest.mark.parametrize("method_cls,progress", [(DistilBERT, 0.0), (TinyBERT, 0.0), (TinyBERT, 0.9)])
def test_gradients_reach_student_and_adapters_never_teacher(pair_cls, method_cls, progress):
    pair, teacher = pair_cls(), tiny_teacher()
    pair.pretrained = lambda num_classes, seed=None: copy.deepcopy(teacher)  # the tiny BERT as "pre-trained"
    student = pair.build_student(teacher, 5)
    teacher.train()  # even a teacher left trainable, run with autograd on, must get no gradient
    method = method_cls()
    x, y = batch()
    needs = frozenset(method.needs)
    s_out, t_out = pair.forward(student, x, needs), pair.forward(teacher, x, needs)
    adapters = method.adapters(s_out.detach(), t_out.detach())
    method.progress = progress
    sum(method.loss(s_out, t_out, y).values()).backward()
    prediction_stage = method_cls is DistilBERT or progress >= 0.5  # TinyBERT: layers first, then logits
    reached = lambda params: [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]  # noqa: E731
    assert all(p.grad is None for p in teacher.parameters())
    assert any(reached(student.parameters()))
    assert reached([student.classifier.weight]) == [prediction_stage]
    if adapters is None:  # a student as wide as its teacher needs no projection
        assert pair_cls is MiniLMDistil3
    else:  # adapters serve the layer losses: all of them in that stage, none in TinyBERT's prediction stage
        layer_stage = method_cls is DistilBERT or progress < 0.5
        assert reached(adapters.parameters()) == [layer_stage] * len(list(adapters.parameters()))


@pytest.mark.parametrize("method_cls", [DistilBERT, TinyBERT])
def test_extra_padding_columns_change_no_loss(method_cls):
    pair, teacher = MiniLMTiny4(), tiny_teacher()
    student = pair.build_student(teacher, 5).eval()
    teacher.eval()
    method = method_cls()
    x, y = batch(width=7)
    wide = {k: torch.cat([v, torch.zeros(3, 5, dtype=v.dtype)], 1) for k, v in x.items()}
    wide["input_ids"][:, 7:] = 17  # whatever the padded ids are
    needs = frozenset(method.needs)
    with torch.no_grad():
        losses = []
        for inputs in (x, wide):
            s_out, t_out = pair.forward(student, inputs, needs), pair.forward(teacher, inputs, needs)
            method.adapters(s_out, t_out) if not losses else None
            losses.append({k: v.item() for k, v in method.loss(s_out, t_out, y).items()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
