"""Getting `Outputs` from timm, transformers and plain torch models.

Methods never see a model class: a tapper turns a model and its inputs into
`Outputs`, computing only the taps that were asked for. Tappers are tried in order;
the first whose `matches` accepts the model is used, so a family is one table row.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from torch import Tensor, nn

from .outputs import Outputs


def _is_transformers(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(getattr(model, "config"), "model_type")


def _is_timm(model: nn.Module) -> bool:
    return hasattr(model, "forward_intermediates") and hasattr(model, "forward_head")


def self_attentions(model: nn.Module) -> list[nn.Module]:
    """The self-attention blocks of a BERT-family model (`query`/`key` projections), in layer order."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "query", None), nn.Linear) and isinstance(getattr(m, "key", None), nn.Linear)
            and hasattr(m, "num_attention_heads")]


def attention_scores(query: Tensor, key: Tensor, heads: int) -> Tensor:
    """(B, L, H·d) projections → (B, H, L, L) pre-softmax scores Q·Kᵀ/√d, no mask added."""
    b, length, width = query.shape
    d = width // heads
    q = query.view(b, length, heads, d).transpose(1, 2)
    k = key.view(b, length, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(d)


@contextmanager
def captured_projections(blocks: list[nn.Module]) -> Iterator[list[dict[str, Tensor]]]:
    """Record each block's query and key projection outputs during one forward pass."""
    stores: list[dict[str, Tensor]] = [{} for _ in blocks]
    handles = []
    for store, block in zip(stores, blocks):
        for name in ("query", "key"):
            def hook(module: nn.Module, args: Any, out: Tensor, store: dict = store, name: str = name) -> None:
                store[name] = out
            handles.append(getattr(block, name).register_forward_hook(hook))
    try:
        yield stores
    finally:
        for h in handles:
            h.remove()


def transformers_outputs(model: nn.Module, inputs: dict[str, Tensor], needs: frozenset[str]) -> Outputs:
    """BERT-family sequence classifiers: hidden states, attention scores and embeddings.

    `hidden_states` are the per-layer outputs (embedding output excluded, it is
    `embeddings`). `attentions` are the per-layer *pre-softmax* attention scores
    Q·Kᵀ/√d, (B, H, L, L), without the padding mask added: TinyBERT matches these
    unnormalised scores, and they carry no attention dropout even in train mode. They
    are computed from the query/key projections recorded by forward hooks, which is
    exact for BERT-style absolute-position attention and works with any attention
    kernel (eager, SDPA). Probabilities, when a method wants them, are
    `softmax(scores.masked_fill(mask[:, None, None, :] == 0, -inf), -1)`.
    """
    want_hidden = bool({"hidden_states", "embeddings"} & needs)
    want_attn = "attentions" in needs
    blocks = self_attentions(model) if want_attn else []
    if want_attn and not blocks:
        raise TypeError(f"{type(model).__name__} has no query/key attention projections to tap")
    with captured_projections(blocks) as stores:
        out = model(**inputs, output_hidden_states=want_hidden)
    hidden = list(out.hidden_states) if want_hidden else None
    scores = [attention_scores(s["query"], s["key"], b.num_attention_heads) for s, b in zip(stores, blocks)]
    return Outputs(
        logits=out.logits,
        hidden_states=hidden[1:] if hidden is not None and "hidden_states" in needs else None,
        embeddings=hidden[0] if hidden is not None and "embeddings" in needs else None,
        attentions=scores if want_attn else None,
        mask=inputs.get("attention_mask"),
    )


def token_map(tokens: Tensor, prefix_tokens: int = 0) -> Tensor:
    """(B, N, C) tokens → (B, C, H, W) map, dropping `prefix_tokens` (class/register) first.

    The remaining tokens must form a square grid (timm's patch order is row-major).
    """
    grid = tokens[:, prefix_tokens:]
    side = math.isqrt(grid.shape[1])
    if side * side != grid.shape[1]:
        raise ValueError(f"{grid.shape[1]} patch tokens do not form a square grid")
    return grid.transpose(1, 2).reshape(grid.shape[0], grid.shape[2], side, side)


def timm_outputs(model: nn.Module, inputs: Tensor, needs: frozenset[str]) -> Outputs:
    """timm models: every intermediate of `forward_intermediates`, as NCHW maps.

    That is the stem and each stage for a CNN (a ResNet gives 5 maps), every block for
    a ViT (patch tokens only: class/register tokens are dropped, so a block is a
    (B, D, H/p, W/p) map), shallow to deep; methods pick them by index (negative =
    from the deepest). Logits come from `forward_head` on the final features, so they
    are exactly what `model(inputs)` returns.
    """
    if "features" not in needs:
        return Outputs(logits=model(inputs))
    final, intermediates = model.forward_intermediates(inputs, output_fmt="NCHW")
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    features = [t if t.ndim == 4 else token_map(t, prefix) for t in intermediates]
    return Outputs(logits=model.forward_head(final), features=features)


def plain_outputs(model: nn.Module, inputs: Any, needs: frozenset[str]) -> Outputs:
    """Any other module: logits only."""
    return Outputs(logits=model(inputs))


#: (matches, tapper) in order of preference; the last row accepts every module.
TAPPERS: list[tuple[Callable[[nn.Module], bool], Callable[..., Outputs]]] = [
    (_is_transformers, transformers_outputs),
    (_is_timm, timm_outputs),
    (lambda m: True, plain_outputs),
]


def outputs(model: nn.Module, inputs: Any, needs: frozenset[str]) -> Outputs:
    """Run `model` on `inputs` and expose the taps in `needs`."""
    for matches, tapper in TAPPERS:
        if matches(model):
            return tapper(model, inputs, needs)
    raise TypeError(f"no tapper for {type(model).__name__}")  # pragma: no cover - last row matches all
