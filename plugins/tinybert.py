"""Method `tinybert`: TinyBERT's task distillation (Jiao et al. 2020, arXiv:1909.10351).

Two phases, each a separate training with a fresh optimizer inside the cell's budget
(`Method.phases`; the official `task_distill.py` runs them as two separate runs):

1. `intermediate` (the first `stage1_fraction` of the budget), constant learning rate:

       w_emb·MSE(E_s·W_e, E_t) + Σ_m [w_attn·MSE(A_s^m, A_t^g(m)) + w_hidden·MSE(H_s^m·W_h, H_t^g(m))]

2. `prediction` (the rest), warm-up then linear decay, `stage2_lr_scale` × the lr:

       w_pred·SCE(s/T, t/T) = −Σ_c softmax(t/T)_c·log softmax(s/T)_c, averaged over the batch.

Layer map g(m) = ⌊m·N/M⌋ for student layer m = 1..M and teacher layer 1..N (the
paper's g(m) = m·N/M, floored when N/M is not whole: 6 → 4 layers maps to teacher
layers 1, 3, 4, 6). W_e and W_h are learned bias-free projections from the student's
width to the teacher's (adapters, counted apart; one W_h shared by all layers, as in
the paper); at equal widths they are the identity.

Every default and where it comes from is in `TinyBERT.sources` (printed with the
method's description). In short: stage fractions 10/13 (the official README: 10
epochs of intermediate-layer distillation, then 3 of prediction-layer), stage 1 at a
constant lr, stage 2 at 0.6 × that lr (3e-5 against the script's default 5e-5) with
10% warm-up and linear decay, T = 1 and all layer weights 1 (the paper).

Prerequisite: the authors start task distillation from a *general-distilled* student
(intermediate-layer distillation on general text), never from a random one. Pairs
whose student starts random (`minilm-tiny4`) do not meet it: stage 1 then drives a
random student toward the teacher's mean hidden state and the pooled vector collapses
(see `kdbench.train.representation_check`); `minilm-tiny4-gd` is the same student
after general distillation, `minilm-distil3` starts from pre-trained MiniLM layers.

Deviations from the official scripts: no data augmentation; the budget is kdbench's
(a few hundred steps), split by the epoch ratio, not epochs; AdamW (with bias
correction) for BertAdam; the learned W_h of task distillation starts fresh (the
official script carries the general-distilled `fit_dense` over); no hard-label term
(as the paper). Attentions are the unnormalised pre-softmax scores Q·Kᵀ/√d, as the
paper matches (see `kdbench.taps`), averaged over heads; every MSE (embeddings, hidden
states, attention scores) is a mean over real tokens only — padded queries and keys
never contribute, where the official script zeroes masked scores (≤ −1e2) and
averages over padded positions too. The soft cross-entropy sums over classes; the
official `(−p_t·log p_s).mean()` also averages over the C classes, so kdbench's
`pred` term is C× the official one (45× on `wordnet-supersense`): a constant gradient
scale that Adam's normalisation absorbs, except through gradient clipping.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench import Method, Outputs, UsageError, hookimpl
from kdbench.api import Phase


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """0-based teacher layer for each 0-based student layer: g(m) = ⌊m·N/M⌋ with 1-based m."""
    return [(m * teacher_layers) // student_layers - 1 for m in range(1, student_layers + 1)]


def masked_mse(a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
    """Mean squared error over the real tokens of (B, L, D) tensors."""
    if mask is None:
        return F.mse_loss(a, b)
    keep = mask.bool()
    return F.mse_loss(a[keep], b[keep])


def masked_attention_mse(a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
    """MSE between (B, H, L, L) score maps over real (query, key) pairs, all heads."""
    if mask is None:
        return F.mse_loss(a, b)
    pairs = (mask[:, :, None] * mask[:, None, :]).bool()  # (B, L, L)
    keep = pairs[:, None].expand_as(a)
    return F.mse_loss(a[keep], b[keep])


def soft_cross_entropy(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """−Σ softmax(t/T)·log softmax(s/T), averaged over the batch."""
    p_t = F.softmax(teacher.float() / temperature, dim=-1)
    return -(p_t * F.log_softmax(student.float() / temperature, dim=-1)).sum(-1).mean()


class TinyBERT(Method):
    """Embedding, attention-score and hidden-state MSE, then soft cross-entropy, as two trainings (Jiao et al. 2020)."""

    name = "tinybert"
    needs = frozenset({"logits", "hidden_states", "attentions", "embeddings"})
    defaults = {"stage1_fraction": 10 / 13, "stage1_lr_scale": 1.0, "stage2_lr_scale": 0.6, "stage2_warmup": 0.1,
                "temperature": 1.0, "w_emb": 1.0, "w_attn": 1.0, "w_hidden": 1.0, "w_pred": 1.0}
    #: Where every default (and every fixed choice) comes from. "Official" is
    #: huawei-noah/Pretrained-Language-Model, TinyBERT/README.md and task_distill.py.
    sources = {
        "stage1_fraction": "official README: intermediate-layer distillation 10 epochs, then prediction-layer "
                           "3 epochs → 10/13 of the budget (20/23 on small tasks)",
        "stage1_schedule": "official task_distill.py: schedule 'none' (a constant lr) without --pred_distill",
        "stage1_lr_scale": "1 × the pair's lr, standing for task_distill.py's default --learning_rate 5e-5 "
                           "(the README's stage-1 command gives none)",
        "stage2_lr_scale": "official README stage 2: --learning_rate 3e-5, i.e. 0.6 × stage 1's 5e-5",
        "stage2_warmup": "official task_distill.py: BertAdam 'warmup_linear' with --warmup_proportion 0.1",
        "optimizer": "a fresh optimizer per stage: the official stages are separate runs",
        "temperature": "paper §3.1 (t = 1 worked well); task_distill.py --temperature default 1",
        "w_emb": "paper §3.1: all layer weights 1", "w_attn": "paper §3.1: all layer weights 1",
        "w_hidden": "paper §3.1: all layer weights 1", "w_pred": "paper §3.1: all layer weights 1",
        "layer_map": "paper §3.1: g(m) = m·N/M (3m for 4 of 12 layers), floored when N/M is not whole",
        "pred_scaling": "kdbench sums the soft cross-entropy over classes; task_distill.py's "
                        "(−p_t·log p_s).mean() averages over them too: kdbench's pred term is C× the official",
        "student_init": "official README: task distillation starts from a general-distilled TinyBERT",
    }

    def __init__(self, **overrides: object) -> None:
        super().__init__(**overrides)
        if not 0.0 <= self.hp.stage1_fraction <= 1.0:
            raise UsageError(f"tinybert.stage1_fraction must be in [0, 1], not {self.hp.stage1_fraction}")
        self.phases()  # checks the lr scales and warm-up now, before any training
        self.w_e: nn.Module = nn.Identity()
        self.w_h: nn.Module = nn.Identity()

    def adapters(self, student: Outputs, teacher: Outputs) -> nn.Module | None:
        s_heads, t_heads = student.attentions[0].shape[1], teacher.attentions[0].shape[1]
        if s_heads != t_heads:
            raise UsageError(f"tinybert matches attention maps head by head: the student has {s_heads} heads, "
                             f"the teacher {t_heads}")
        ds, dt = student.hidden_states[-1].shape[-1], teacher.hidden_states[-1].shape[-1]
        if ds == dt:
            return None
        self.w_e, self.w_h = nn.Linear(ds, dt, bias=False), nn.Linear(ds, dt, bias=False)
        return nn.ModuleDict({"w_e": self.w_e, "w_h": self.w_h})

    def phases(self) -> list[Phase]:
        first = self.hp.stage1_fraction
        return [Phase("intermediate", first, schedule="constant", lr_scale=self.hp.stage1_lr_scale),
                Phase("prediction", 1.0 - first, schedule="linear", warmup=self.hp.stage2_warmup,
                      lr_scale=self.hp.stage2_lr_scale)]

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        if self.progress >= self.hp.stage1_fraction:  # the loop keeps progress inside each phase's share
            return {"pred": self.hp.w_pred * soft_cross_entropy(student.logits, teacher.logits.detach(),
                                                                 self.hp.temperature)}
        mask = student.mask
        layers = layer_map(len(student.hidden_states), len(teacher.hidden_states))
        emb = masked_mse(self.w_e(student.embeddings), teacher.embeddings.detach(), mask)
        attn = torch.stack([masked_attention_mse(student.attentions[m], teacher.attentions[n].detach(), mask)
                            for m, n in enumerate(layers)]).sum()
        hidden = torch.stack([masked_mse(self.w_h(student.hidden_states[m]), teacher.hidden_states[n].detach(), mask)
                              for m, n in enumerate(layers)]).sum()
        return {"emb": self.hp.w_emb * emb, "attn": self.hp.w_attn * attn, "hidden": self.hp.w_hidden * hidden}


@hookimpl
def kdbench_methods() -> list[type]:
    return [TinyBERT]
