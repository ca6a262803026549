"""Method `distilbert`: DistilBERT's triple loss (Sanh et al. 2019, arXiv:1910.01108).

    loss = α_ce·T²·KL(softmax(t/T) ‖ softmax(s/T))         soft targets
         + α_task·CE(s, y)                                 hard labels
         + α_cos·mean over real tokens of (1 − cos(h_s·P, h_t))   last hidden states

Defaults follow the DistilBERT recipe (Hugging Face `examples/research_projects/
distillation`): α_ce 5, α_cos 1, T 2, and α_task 2, the weight the recipe gives its
second supervised term (α_mlm). The cosine term is token-wise over the last layer's
hidden states, with padding tokens dropped (as the recipe does with its attention
mask); all weights are `--set` overridable.

Deviations: the masked-LM term is absent, because the pairs provide labelled
classification batches, not masked-LM batches — the labels' cross-entropy takes its
place (as in the recipe's task-specific distillation scripts). When student and
teacher widths differ, `P` is a learned linear projection (an adapter, counted apart,
trained with the student) and the term is recorded as `cos_proj` instead of `cos`;
at equal widths `P` is the identity, as in the paper.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench import Method, Outputs, hookimpl
from kdbench.losses import soft_kl


def real_tokens(x: Tensor, mask: Tensor | None) -> Tensor:
    """(B, L, D) → (N, D): the vectors at real (unpadded) tokens."""
    return x.reshape(-1, x.shape[-1]) if mask is None else x[mask.bool()]


class DistilBERT(Method):
    """Soft targets at T + hard labels + cosine between last hidden states (Sanh et al. 2019)."""

    name = "distilbert"
    needs = frozenset({"logits", "hidden_states"})
    defaults = {"temperature": 2.0, "alpha_ce": 5.0, "alpha_task": 2.0, "alpha_cos": 1.0}
    sources = {
        "temperature": "Hugging Face examples/research_projects/distillation/train.py, --temperature default 2.0",
        "alpha_ce": "the same recipe's README command, --alpha_ce 5.0",
        "alpha_task": "the recipe's --alpha_mlm 2.0, given to the labels' cross-entropy that replaces the MLM term",
        "alpha_cos": "the recipe's README command, --alpha_cos 1.0",
    }

    def __init__(self, **overrides: object) -> None:
        super().__init__(**overrides)
        self.projection: nn.Module | None = None

    def adapters(self, student: Outputs, teacher: Outputs) -> nn.Module | None:
        ds, dt = student.hidden_states[-1].shape[-1], teacher.hidden_states[-1].shape[-1]
        self.projection = nn.Linear(ds, dt) if ds != dt else None
        return self.projection

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        hs = real_tokens(student.hidden_states[-1], student.mask)
        ht = real_tokens(teacher.hidden_states[-1], student.mask).detach()
        if self.projection is not None:
            hs = self.projection(hs)
        cos = (1.0 - F.cosine_similarity(hs.float(), ht.float(), dim=-1)).mean()
        return {
            "ce": self.hp.alpha_ce * soft_kl(student.logits, teacher.logits.detach(), self.hp.temperature),
            "task": self.hp.alpha_task * F.cross_entropy(student.logits, labels),
            "cos_proj" if self.projection is not None else "cos": self.hp.alpha_cos * cos,
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [DistilBERT]
