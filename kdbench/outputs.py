"""`Outputs`: what a model exposes to a method — logits plus the taps asked for (public).

Kept apart from `kdbench.api` so that `kdbench.taps` (which builds Outputs from timm
and transformers models) and `kdbench.api` (whose `Pair.forward` uses the taps) import
it without importing each other.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: Every tap a model can expose. `logits` is always there.
TAPS: frozenset[str] = frozenset({"logits", "features", "hidden_states", "attentions", "embeddings"})
#: The sequence (token) dimensions of each text field, which a batch's length sets.
SEQUENCE_DIMS: dict[str, tuple[int, ...]] = {"hidden_states": (1,), "embeddings": (1,), "attentions": (2, 3),
                                             "mask": (1,)}


@dataclass
class Outputs:
    """What a model exposes to a method: logits plus the taps it was asked for.

    A tap that was not asked for, or that the model cannot expose, is None.
    `features` are NCHW maps (CNN stages, ViT tokens reshaped), shallow to deep;
    `hidden_states` are (B, L, D) per transformer layer, first layer to last, and
    `embeddings` the (B, L, D) embedding-layer output; `attentions` are (B, H, L, L)
    per layer: the *pre-softmax* scores Q·Kᵀ/√d with no padding mask added (mask the
    padded keys and softmax over the last axis for probabilities; see
    `kdbench.taps.transformers_outputs`). `mask` is the (B, L) attention mask of text
    inputs (1 = real token); padded positions of every text tap are meaningless.
    """

    logits: Tensor
    features: list[Tensor] | None = None
    hidden_states: list[Tensor] | None = None
    attentions: list[Tensor] | None = None
    embeddings: Tensor | None = None
    mask: Tensor | None = None

    def detach(self) -> "Outputs":
        def _d(v: Any) -> Any:
            if isinstance(v, Tensor):
                return v.detach()
            if isinstance(v, (list, tuple)):
                return [t.detach() for t in v]
            return v

        return Outputs(**{f.name: _d(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def rows(self, idx: Tensor, dtype: torch.dtype | None = None) -> "Outputs":
        """Examples `idx` of every tensor (a batch out of outputs cached for a whole split);
        floating tensors cast to `dtype` when given."""
        def _r(v: Any) -> Any:
            if isinstance(v, Tensor):
                v = v[idx.to(v.device)]
                return v.to(dtype) if dtype is not None and v.is_floating_point() else v
            if isinstance(v, (list, tuple)):
                return [_r(t) for t in v]
            return v

        return Outputs(**{f.name: _r(getattr(self, f.name)) for f in dataclasses.fields(self)})
