"""General distillation: a random student's layers distilled from the teacher on unlabelled text, cached.

TinyBERT (Jiao et al. 2020 §3.2) starts task distillation from a *general-distilled*
student: one trained, before any task, to match the teacher's embedding-layer output,
attention scores and hidden states (TinyBERT's intermediate-layer losses, no
prediction loss) on general text. This module does that step for kdbench's text pairs
and caches the result like a teacher:

    $KDBENCH_HOME/general-distill/<name>-<recipe hash>/model.safetensors + card.json

The recipe (teacher weights' sha256, student architecture, text fingerprint, steps,
batch, lr, warm-up, seed) is the artefact's identity; the card keeps the recipe, the
sha256 of the weights, the wall seconds it took and the final loss terms. The card is
written last, so an interrupted run leaves no card and is simply redone; a checkpoint
whose sha256 does not match its card is refused (`UsageError`, one line) rather than
loaded or silently replaced.

It trains through kdbench's one training loop (`kdbench.train.train`), with the
`tinybert` losses as one phase under warm-up and linear decay (the official
`general_distill.py`: BertAdam, `warmup_linear`, 10% warm-up). Only the student's
body (the parameters whose names start with one of `keep`, e.g. embeddings and
encoder) is saved and later loaded; the pooler and the classifier head are left as the
seed made them. The student built for general distillation uses its own seed, and the
caller's random state is restored afterwards, so a pair that asks for it hands every
method the same seeded student it would have without it, plus the distilled body.

Deviations from the paper: the teacher is the pair's teacher (fine-tuned on the task's
training split), not the pre-trained one, and the text is WordNet's (see
`wordnet_supersense.unlabelled_texts`), not Wikipedia; budgets are minutes, not days.
"""
from __future__ import annotations

import hashlib
import json
import time
import weakref
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kdbench import Budget, Outputs, Schedule, TensorData, UsageError
from kdbench.api import Phase
from kdbench.fsutil import atomic_path, atomic_write_text, sha256_file
from kdbench.train import train
from kdbench import kdbench_home
from kdbench.zoo import recipe_key

from .tinybert import TinyBERT

#: Bump when what an artefact means changes (loss, text, what is saved).
VERSION = 1
CARD_KEYS = ("key", "recipe", "sha256", "seconds", "steps")
Forward = Callable[[nn.Module, Any, frozenset], Outputs]


class GeneralDistillation(TinyBERT):
    """TinyBERT's intermediate-layer losses only, as one phase with warm-up and linear decay (not registered)."""

    name = "general-distillation"
    defaults = {**TinyBERT.defaults, "stage1_fraction": 1.0, "warmup": 0.1}

    def phases(self) -> list[Phase]:
        return [Phase("general", 1.0, schedule="linear", warmup=self.hp.warmup)]


_digests: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's state (names, dtypes, shapes, values); computed once per model object."""
    if model not in _digests:
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        _digests[model] = h.hexdigest()
    return _digests[model]


def folder_for(recipe: dict[str, Any], name: str):
    return kdbench_home() / "general-distill" / recipe_key({**recipe, "model": name})


def read_card(folder) -> dict[str, Any] | None:
    """The artefact's card, or None when there is none or it is unreadable (then it is redone)."""
    try:
        card = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and all(k in card for k in CARD_KEYS) else None


def load_verified(folder) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The cached body and its card; None when absent; `UsageError` when its sha256 fails."""
    card = read_card(folder)
    weights = folder / "model.safetensors"
    if card is None or not weights.is_file():
        return None
    actual = sha256_file(weights)
    if actual != card["sha256"]:
        raise UsageError(f"general-distilled student {weights} is corrupt: its sha256 is {actual[:12]}…, "
                         f"its card says {str(card['sha256'])[:12]}…; delete {folder} to distil it again")
    return load_file(str(weights)), card


def general_distilled(
    student: nn.Module,
    build: Callable[[], nn.Module],
    teacher: nn.Module,
    forward: Forward,
    texts: Callable[[], TensorData],
    recipe: dict[str, Any],
    *,
    name: str,
    keep: Sequence[str],
    schedule: Schedule,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Load the general-distilled body into `student` (in place), distilling it first when
    it is not cached; return the artefact's card plus `"reused"` (whether it was cached).

    `build()` makes the student that is distilled (called under `recipe["seed"]`); `texts()`
    the unlabelled, tokenised text (called only when distilling); `recipe` says what
    else identifies the artefact (architecture, text fingerprint); `schedule` gives steps,
    batch size, lr and gradient clipping. The teacher's weights' sha256 is added to it.
    """
    recipe = {**recipe, "teacher_sha256": weights_digest(teacher), "steps": schedule.steps,
              "batch_size": schedule.batch_size, "lr": schedule.lr, "keep": list(keep), "version": VERSION}
    folder = folder_for(recipe, name)
    cached = load_verified(folder)
    reused = cached is not None
    if cached is None:
        cached = distil(build, teacher, forward, texts, recipe, folder, schedule, name, on_step)
    body, card = cached
    missing = [k for k in body if k not in student.state_dict()]
    if missing:
        raise UsageError(f"general-distilled student {folder} does not fit this student (no {missing[0]!r}); "
                         f"delete {folder} to distil it again")
    with torch.no_grad():
        state = student.state_dict()
        for key, value in body.items():
            state[key].copy_(value)
    return {**card, "reused": reused}


def distil(build: Callable[[], nn.Module], teacher: nn.Module, forward: Forward, texts: Callable[[], TensorData],
           recipe: dict[str, Any], folder, schedule: Schedule, name: str,
           on_step: Callable[[int, float], None] | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run general distillation once and write the artefact (weights first, card last)."""
    started = time.perf_counter()
    device = next(teacher.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        student = build().to(device)
        data = texts().to(device)
        method = GeneralDistillation(warmup=recipe.get("warmup", 0.1))
        sample = data.take(schedule.batch_size)
        needs = frozenset(method.needs)
        with torch.no_grad():
            s_out, t_out = forward(student, sample.x, needs), forward(teacher, sample.x, needs)
        adapters = method.adapters(s_out.detach(), t_out)
        if adapters is not None:
            adapters = adapters.to(device)
        was_training = teacher.training
        result = train(student, method, data, Budget(steps=schedule.steps), schedule, forward,
                       seed=recipe["seed"], teacher=teacher, adapters=adapters, on_step=on_step)
        teacher.train(was_training)
    keep = tuple(recipe["keep"])
    body = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items() if k.startswith(keep)}
    weights = folder / "model.safetensors"
    with atomic_path(weights) as tmp:
        save_file(body, str(tmp))
    card = {
        "key": folder.name,
        "recipe": recipe,
        "sha256": sha256_file(weights),
        "seconds": round(time.perf_counter() - started, 3),
        "train_seconds": round(result.seconds, 3),
        "steps": result.steps,
        "texts": len(data),
        "terms": result.terms,
        "params": sum(v.numel() for v in body.values()),
        "device": str(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2, sort_keys=True))
    return body, card
