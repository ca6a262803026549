"""Method `tinybert`: TinyBERT's task distillation (Jiao et al. 2020, arXiv:1909.10351).

Stage 1, intermediate layers (while `self.progress < stage1_fraction`):

    w_emb·MSE(E_s·W_e, E_t) + Σ_m [w_attn·MSE(A_s^m, A_t^g(m)) + w_hidden·MSE(H_s^m·W_h, H_t^g(m))]

Stage 2, prediction layer: w_pred·SCE(s/t_T, t/t_T) = −Σ softmax(t/T)·log softmax(s/T).

Layer map g(m) = ⌊m·N/M⌋ for student layer m = 1..M and teacher layer 1..N (the
paper's g(m) = m·N/M, floored when N/M is not whole: 6 → 4 layers maps to teacher
layers 1, 3, 4, 6). W_e and W_h are learned bias-free projections from the student's
width to the teacher's (adapters, counted apart; one W_h shared by all layers, as in
the paper); at equal widths they are the identity.

Defaults: all layer weights 1, T = 1 (the paper's choices), and `stage1_fraction`
0.5 of the budget. Deviations: both task stages run inside the one budget of a cell —
the paper runs them as separate trainings (intermediate ≈ 10–20 epochs, prediction 3),
with general distillation and data augmentation before them, none of which is done
here; the half/half split is not from the paper (with budgets of a few hundred steps,
the prediction stage is what trains the classifier head). No hard-label term, as in
the paper. Attentions are the unnormalised pre-softmax scores Q·Kᵀ/√d, as the paper
matches (see `kdbench.taps`), averaged over heads; every MSE (embeddings, hidden
states, attention scores) is a mean over real tokens only — padded queries and padded
keys never contribute.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench import Method, Outputs, UsageError, hookimpl


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
    """Embedding, attention-score and hidden-state MSE, then soft cross-entropy (Jiao et al. 2020)."""

    name = "tinybert"
    needs = frozenset({"logits", "hidden_states", "attentions", "embeddings"})
    defaults = {"stage1_fraction": 0.5, "temperature": 1.0, "w_emb": 1.0, "w_attn": 1.0, "w_hidden": 1.0,
                "w_pred": 1.0}

    def __init__(self, **overrides: object) -> None:
        super().__init__(**overrides)
        if not 0.0 <= self.hp.stage1_fraction <= 1.0:
            raise UsageError(f"tinybert.stage1_fraction must be in [0, 1], not {self.hp.stage1_fraction}")
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

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        if self.progress >= self.hp.stage1_fraction:
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
