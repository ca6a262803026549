"""Getting `Outputs` from timm, transformers and plain torch models.

Methods never see a model class: a tapper turns a model and its inputs into
`Outputs`, computing only the taps that were asked for. Tappers are tried in order;
the first whose `matches` accepts the model is used, so a family is one table row.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from .api import Outputs


def _is_transformers(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(getattr(model, "config"), "model_type")


def _is_timm(model: nn.Module) -> bool:
    return hasattr(model, "forward_intermediates") and hasattr(model, "forward_head")


def transformers_outputs(model: nn.Module, inputs: dict[str, Tensor], needs: frozenset[str]) -> Outputs:
    """BERT-family sequence classifiers: hidden states, attentions and embeddings.

    `hidden_states` are the per-layer outputs (embedding output excluded, it is
    `embeddings`); `attentions` are the per-layer attention probabilities as
    transformers returns them (eager attention is needed for them).
    """
    want_hidden = bool({"hidden_states", "embeddings"} & needs)
    want_attn = "attentions" in needs
    out = model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attn)
    hidden = list(out.hidden_states) if want_hidden else None
    return Outputs(
        logits=out.logits,
        hidden_states=hidden[1:] if hidden is not None and "hidden_states" in needs else None,
        embeddings=hidden[0] if hidden is not None and "embeddings" in needs else None,
        attentions=list(out.attentions) if want_attn else None,
        mask=inputs.get("attention_mask"),
    )


def timm_outputs(model: nn.Module, inputs: Tensor, needs: frozenset[str]) -> Outputs:
    """timm models: stage/block maps through `forward_intermediates` (NCHW, ViTs too)."""
    if "features" not in needs:
        return Outputs(logits=model(inputs))
    final, intermediates = model.forward_intermediates(inputs)
    return Outputs(logits=model.forward_head(final), features=list(intermediates))


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
