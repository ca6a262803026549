"""Student bodies trained once per recipe before any cell, and cached like teachers.

Some methods assume a student that was already trained before the task: TinyBERT's
task distillation starts from a *general-distilled* student. A pair whose student
needs such a start asks for it from `build_student` with `cached_body(...)`: the
pair supplies the method (its loss), the data, what to keep and the recipe; this
module trains it through the one training loop, once, and caches it:

    $KDBENCH_HOME/students/<name>-<recipe hash>/model.safetensors + card.json

The recipe (the teacher's weights' sha256 added to what the pair gives: architecture,
data fingerprint, steps, batch, lr, seed) is the artefact's identity. The card keeps
the recipe, the weights' sha256, the wall seconds it took and the final loss terms;
it is written last, so an interrupted run leaves no card and is redone. Weights whose
sha256 does not match their card are refused with a one-line `UsageError`, never
loaded or silently replaced. Nothing here knows a model, method or dataset by name.
"""
from __future__ import annotations

import hashlib
import json
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .api import Forward, Method, Schedule, TensorData
from .budget import Budget
from .env import kdbench_home
from .errors import UsageError
from .fsutil import atomic_path, atomic_write_text, sha256_file
from .results import utc_now
from .train import train
from .zoo import recipe_key

#: Bump when what an artefact means changes (what is saved, how it is trained).
VERSION = 1
CARD_KEYS = ("key", "recipe", "sha256", "seconds", "steps")

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


def folder_for(recipe: dict[str, Any], name: str) -> Path:
    return kdbench_home() / "students" / recipe_key({**recipe, "model": name})


def artefact_files(key: str) -> dict[str, bytes]:
    """The files of the cached artefact `key` (weights and card), to carry to a process
    that shares no disk with this one (a Ray worker on another node)."""
    folder = kdbench_home() / "students" / key
    return {name: (folder / name).read_bytes() for name in ("model.safetensors", "card.json")}


def install_artefact(key: str, files: dict[str, bytes]) -> Path:
    """Write carried artefact files into this process's cache unless it has them (weights
    first, card last, as `_train` does); `load_verified` checks them on use."""
    folder = kdbench_home() / "students" / key
    if read_card(folder) is None:
        for name in ("model.safetensors", "card.json"):
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(files[name])
    return folder


def read_card(folder: Path) -> dict[str, Any] | None:
    """The artefact's card, or None when there is none or it is unreadable (then it is redone)."""
    try:
        card = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and all(k in card for k in CARD_KEYS) else None


def load_verified(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The cached body and its card; None when absent; `UsageError` when its sha256 fails."""
    card = read_card(folder)
    weights = folder / "model.safetensors"
    if card is None or not weights.is_file():
        return None
    actual = sha256_file(weights)
    if actual != card["sha256"]:
        raise UsageError(f"pre-trained student {weights} is corrupt: its sha256 is {actual[:12]}…, "
                         f"its card says {str(card['sha256'])[:12]}…; delete {folder} to train it again")
    return load_file(str(weights)), card


def cached_body(
    student: nn.Module,
    build: Callable[[], nn.Module],
    method: Method,
    teacher: nn.Module,
    forward: Forward,
    data: Callable[[], TensorData],
    recipe: dict[str, Any],
    *,
    name: str,
    keep: Sequence[str],
    schedule: Schedule,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Load the cached body into `student` (in place), training it first when it is not
    cached; return the artefact's card plus `"reused"` (whether it was cached).

    `build()` makes the student that is trained (under `recipe["seed"]`, with the caller's
    random state restored afterwards); `method` is its loss (with adapters if it has
    any); `data()` the training data (called only when training); `keep` the name
    prefixes of the parameters saved and loaded (the rest of `student`, e.g. its
    classifier head, stays as its seed made it); `schedule` gives steps, batch size,
    lr and gradient clipping; `recipe` what else identifies the artefact. Training shows a
    progress bar unless `progress` is False or `on_step` takes the steps.
    """
    recipe = {**recipe, "method": method.name, "hparams": vars(method.hp), "teacher_sha256": weights_digest(teacher),
              "steps": schedule.steps, "batch_size": schedule.batch_size, "lr": schedule.lr, "keep": list(keep),
              "version": VERSION}
    folder = folder_for(recipe, name)
    cached = load_verified(folder)
    reused = cached is not None
    if cached is None:
        cached = _train(build, method, teacher, forward, data, recipe, folder, schedule, on_step, progress)
    body, card = cached
    state = student.state_dict()
    missing = [k for k in body if k not in state or state[k].shape != body[k].shape]
    if missing:
        raise UsageError(f"pre-trained student {folder} does not fit this student ({missing[0]!r}); "
                         f"delete {folder} to train it again")
    with torch.no_grad():
        for key, value in body.items():
            state[key].copy_(value)
    return {**card, "reused": reused}


def _train(build: Callable[[], nn.Module], method: Method, teacher: nn.Module, forward: Forward,
           data: Callable[[], TensorData], recipe: dict[str, Any], folder: Path, schedule: Schedule,
           on_step: Callable[[int, float], None] | None,
           progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the body once and write the artefact (weights first, card last); with
    `progress` and without `on_step`, a bar shows the steps (it can take many minutes)."""
    bar = tqdm(total=schedule.steps, desc=f"student body {folder.name}", leave=False,
               disable=not progress or on_step is not None)
    on_step = on_step or (lambda step, loss: bar.update(1))
    started = time.perf_counter()
    device = next(teacher.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        student, examples = build().to(device), data().to(device)
        sample, needs = examples.take(schedule.batch_size), frozenset(method.needs) | {"logits"}
        with torch.no_grad():
            s_out, t_out = forward(student, sample.x, needs), forward(teacher, sample.x, needs)
        adapters = method.adapters(s_out.detach(), t_out)
        try:
            result = train(student, method, examples, Budget(steps=schedule.steps), schedule, forward,
                           seed=recipe["seed"], teacher=teacher, on_step=on_step,
                           adapters=adapters.to(device) if adapters is not None else None)
        finally:
            bar.close()
    keep = tuple(recipe["keep"])
    body = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items() if k.startswith(keep)}
    weights = folder / "model.safetensors"
    with atomic_path(weights) as tmp:
        save_file(body, str(tmp))
    card = {"key": folder.name, "recipe": recipe, "sha256": sha256_file(weights),
            "seconds": round(time.perf_counter() - started, 3), "train_seconds": round(result.seconds, 3),
            "steps": result.steps, "examples": len(examples), "terms": result.terms,
            "params": sum(v.numel() for v in body.values()), "device": str(device),
            "created": utc_now()}
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2, sort_keys=True))
    return body, card
