"""Shipped teachers: converged, pinned checkpoints that come with a pair's plugin package.

A pair opts in with two optional attributes (duck-typed, so third-party pairs need
nothing new):

- `shipped_teacher_dir`: a folder (package data of the plugin) holding `card.json` and
  the checkpoint(s) the card lists under `files` with their sha256;
- `zoo_recipe()`: the converged training recipe that produced it — `epochs`,
  `batch_size`, `lr`, `weight_decay`, `label_smoothing`, `augment` (a name the pair's
  `augment_teacher_batch(x, name)` understands, or None), `store` (`fp32` or `fp16`) and
  optional `warmup` (share of the steps warmed up linearly before the cosine decay, default 0),
  `dataset_options` (overrides of the pair's `dataset_options("standard")`),
  `eval_points` (validation curve points, default one per epoch) and `curve_eval_limit`.

The `quick` and `standard` profiles (or the pair's `shipped_profiles`) use the shipped teacher (`source: shipped`); `smoke`
and the `weak-teacher` scenario train theirs in the zoo (`source: trained`). A shipped
checkpoint whose sha256 differs from its card is refused with a `UsageError` (one line,
exit code 2): it is never retrained silently, since it is what every published number
used. A pair whose folder has no card yet (a recipe not trained so far) falls back to
the trained teacher.

Augmentation is applied only to the teacher's own training batches (the forward is
wrapped while the model is in train mode), so the shipped teacher's logits on
un-augmented training images stay fixed and cacheable for students.

A pair may store a teacher partially (`stored_teacher_state(model)` returns the tensors
to store, `build_teacher` restores the rest, e.g. frozen pretrained layers that ship in
another package); `load_state_dict(strict=False)` then must report no unexpected keys.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .accel import Accel
from .api import Budget, Method, Outputs, Pair, Schedule, Splits
from .errors import UsageError
from .fsutil import atomic_path, atomic_write_text, sha256_file
from .results import utc_now, versions
from .train import accuracy, predict, set_teacher_frozen, train

#: Profiles that use the shipped teacher when the pair has one.
SHIPPED_PROFILES = ("quick", "standard")
TEACHER_SEED = 0
CHECKPOINT = "model.safetensors"


class SmoothedCE(Method):
    """Cross-entropy with label smoothing; how shipped teachers are trained."""

    name = "supervised-smoothed"
    uses_teacher = False
    defaults = {"label_smoothing": 0.0}

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student.logits, labels, label_smoothing=self.hp.label_smoothing)}


def shipped_dir(pair: Pair) -> Path | None:
    folder = getattr(pair, "shipped_teacher_dir", None)
    return Path(folder) if folder is not None else None


def has_recipe(pair: Pair) -> bool:
    return callable(getattr(pair, "zoo_recipe", None))


def read_card(folder: Path) -> dict[str, Any] | None:
    """The shipped card in `folder`, or None when the pair has none (yet)."""
    path = folder / "card.json"
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"shipped teacher card {path} is unreadable; reinstall kdbench") from None
    if not isinstance(card, dict) or not isinstance(card.get("files"), dict):
        raise UsageError(f"shipped teacher card {path} is malformed (no 'files'); reinstall kdbench")
    return card


def verify(folder: Path) -> list[str]:
    """Problems with the shipped teacher in `folder` (empty when every file matches its card)."""
    card = read_card(folder)
    if card is None:
        return [f"{folder / 'card.json'}: missing"]
    problems = []
    for name, expected in sorted(card["files"].items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(f"{path}: sha256 {actual[:12]}…, its card says {expected[:12]}…")
    return problems


def stored_state(pair: Pair, model: nn.Module, store: str) -> dict[str, Tensor]:
    """The tensors a shipped checkpoint keeps: the pair's choice, else the whole state."""
    pick = getattr(pair, "stored_teacher_state", None)
    state = pick(model) if callable(pick) else model.state_dict()
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if store == "fp16" and v.is_floating_point():
            v = v.half()
        out[k] = v.clone().contiguous()
    return out


def build_from_state(pair: Pair, num_classes: int, state: dict[str, Tensor]) -> nn.Module:
    """`pair.build_teacher` with `state` loaded over it (cast to the model's dtypes)."""
    torch.manual_seed(TEACHER_SEED)
    model = pair.build_teacher(num_classes)
    own = model.state_dict()
    cast = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    result = model.load_state_dict(cast, strict=False)
    if result.unexpected_keys:
        raise UsageError(f"shipped teacher of {pair.name!r} has tensors the model lacks: "
                         f"{', '.join(result.unexpected_keys[:3])}; reinstall kdbench")
    if result.missing_keys and not callable(getattr(pair, "stored_teacher_state", None)):
        raise UsageError(f"shipped teacher of {pair.name!r} lacks tensors: {', '.join(result.missing_keys[:3])}")
    set_teacher_frozen(model)
    return model


def load(pair: Pair, num_classes: int) -> tuple[nn.Module, dict[str, Any]] | None:
    """The pair's shipped teacher (model, card), verified; None when it has none.

    A checkpoint that fails its sha256 raises `UsageError`: a run refuses it.
    """
    folder = shipped_dir(pair)
    if folder is None:
        return None
    card = read_card(folder)
    if card is None:
        return None
    problems = verify(folder)
    if problems:
        raise UsageError(f"shipped teacher checkpoint {problems[0]}; refusing to use it "
                         "(reinstall kdbench; `kdbench teachers verify` checks every shipped teacher)")
    model = build_from_state(pair, num_classes, load_file(str(folder / CHECKPOINT)))
    return model, {**card, "source": "shipped"}


# -- training a zoo recipe ---------------------------------------------------------------
def recipe_steps(recipe: dict[str, Any], n_train: int) -> int:
    return max(1, int(recipe["epochs"] * math.ceil(n_train / recipe["batch_size"])))


def recipe_schedule(recipe: dict[str, Any], steps: int) -> Schedule:
    """The training schedule a zoo recipe names: AdamW, optional linear warm-up, cosine to 0,
    batches grouped by length when the recipe says `group_by_length`."""
    extra = {"group_by_length": recipe["group_by_length"]} if recipe.get("group_by_length") else {}
    return Schedule(steps=steps, teacher_steps=steps, batch_size=recipe["batch_size"], lr=recipe["lr"],
                    teacher_lr=recipe["lr"], weight_decay=recipe.get("weight_decay", 0.0),
                    grad_clip=recipe.get("grad_clip", 10.0), warmup=recipe.get("warmup", 0.0), extra=extra)


def augmented_forward(pair: Pair, forward: Callable, augment: str | None) -> Callable:
    """`forward`, with the pair's teacher augmentation applied to batches in train mode."""
    if not augment:
        return forward
    hook = getattr(pair, "augment_teacher_batch", None)
    if not callable(hook):
        raise UsageError(f"pair {pair.name!r} names augmentation {augment!r} but has no augment_teacher_batch")

    def wrapped(model: nn.Module, inputs: Any, needs: frozenset[str]) -> Outputs:
        if model.training:
            inputs = hook(inputs, augment)
        return forward(model, inputs, needs)

    return wrapped


def train_recipe(pair: Pair, splits: Splits, accel: Accel, out: Path, *, recipe: dict[str, Any] | None = None,
                 command: str = "", on_step: Callable[[int, float], None] | None = None,
                 max_steps: int | None = None, note: str = "") -> dict[str, Any]:
    """Train `pair`'s zoo recipe on `splits` from scratch; write `out/model.safetensors` and `out/card.json`.

    Validation accuracy is recorded after every epoch (the curve the recipe was chosen
    on); val and test accuracy on the card are those of the weights *as stored*
    (after any fp16 rounding). `max_steps` caps the run (smoke-sized reproductions).
    """
    recipe = dict(recipe if recipe is not None else pair.zoo_recipe())  # type: ignore[attr-defined]
    steps = recipe_steps(recipe, len(splits.train))
    if max_steps is not None:
        steps = min(steps, max_steps)
    schedule = recipe_schedule(recipe, steps)
    torch.manual_seed(TEACHER_SEED)
    model = accel.model(pair.build_teacher(splits.num_classes))
    forward = accel.forward(pair.forward)
    loss = SmoothedCE(label_smoothing=float(recipe.get("label_smoothing", 0.0)))
    val_eval = splits.val.take(recipe.get("curve_eval_limit"))
    epochs_in_run = max(1, round(steps / math.ceil(len(splits.train) / recipe["batch_size"])))
    points = int(recipe.get("eval_points", epochs_in_run))
    started = time.perf_counter()
    result = train(model, loss, splits.train, Budget(steps=steps), schedule,
                   augmented_forward(pair, forward, recipe.get("augment")), seed=TEACHER_SEED, lr=recipe["lr"],
                   on_step=on_step, evaluate=lambda: accuracy(predict(model, forward, val_eval), val_eval.y),
                   eval_points=max(1, min(points, steps)))
    seconds = time.perf_counter() - started
    set_teacher_frozen(model)
    card = _store(pair, model, splits, accel, recipe, out)
    card.update({
        "command": command,
        "steps": result.steps,
        "epochs": round(result.steps / math.ceil(len(splits.train) / recipe["batch_size"]), 3),
        "val_curve": result.curve,
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine_note": note,
        **accel.describe(),
    })
    atomic_write_text(out / "card.json", json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def _store(pair: Pair, model: nn.Module, splits: Splits, accel: Accel, recipe: dict[str, Any],
           out: Path) -> dict[str, Any]:
    """Write the trained teacher as it ships; the card's facts about the weights as stored
    (accuracy after any fp16 rounding, size, sha256)."""
    forward = accel.forward(pair.forward)
    state = stored_state(pair, model, recipe.get("store", "fp32"))
    out.mkdir(parents=True, exist_ok=True)
    weights = out / CHECKPOINT
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))  # no metadata: its key order is not stable, the bytes must be
    stored = accel.model(build_from_state(pair, splits.num_classes, load_file(str(weights))))
    val_acc = accuracy(predict(stored, forward, splits.val), splits.val.y)
    test_acc = accuracy(predict(stored, forward, splits.test), splits.test.y)
    live_val = accuracy(predict(model, forward, splits.val), splits.val.y)
    sha = sha256_file(weights)
    return {
        "key": f"shipped-{out.name}-{sha[:12]}",
        "source": "shipped",
        "pair": pair.name,
        "profile": "zoo",
        "recipe": recipe,
        "train_examples": len(splits.train),
        "val_examples": len(splits.val),
        "test_examples": len(splits.test),
        "val_acc": val_acc,
        "test_acc": test_acc,
        "val_acc_before_storing": live_val,
        "params": sum(p.numel() for p in model.parameters()),
        "stored_params": sum(v.numel() for v in state.values()),
        "size_bytes": weights.stat().st_size,
        "data_fingerprint": splits.fingerprint,
        "versions": versions(),
        "sha256": sha,
        "files": {CHECKPOINT: sha},
        "created": utc_now(),
    }
