"""The teacher zoo: teachers trained once per recipe, cached as safetensors + a card.

A teacher's recipe (model, dataset, profile, training settings) is its identity:
pairs with the same recipe share one checkpoint. The card (JSON) is written last, so
a teacher whose training was interrupted simply has no card and is trained again.
Loading verifies the checkpoint's sha256; a mismatch is reported and the teacher is
retrained, never silently loaded.

At the `quick` and `standard` profiles a pair with a shipped teacher (see
`kdbench.shipped`) uses it instead: converged, pinned, package data of its plugin,
`card["source"] == "shipped"`; a shipped checkpoint that fails its sha256 stops the run
(`UsageError`). Trained teachers carry `card["source"] == "trained"`.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from . import shipped
from .accel import Accel
from .api import Budget, Pair, Splits
from .env import kdbench_home
from .errors import UsageError
from .fsutil import atomic_path, atomic_write_text, sha256_file, writable_dir_problem
from .results import json_digest, utc_now
from .shipped import SHIPPED_PROFILES
from .train import SupervisedLoss, accuracy, predict, set_teacher_frozen, train

TEACHER_SEED = 0
CARD_KEYS = ("key", "profile", "test_acc", "params", "sha256")


@dataclass
class Teacher:
    model: nn.Module
    card: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.card["sha256"]


@dataclass(frozen=True)
class CarriedTeacher:
    """A teacher as it travels to a process that shares no memory or disk with this one:
    its card and weights, rebuilt there by the pair (a module may hold hooks or context
    variables that no pickler carries, as transformers models do)."""

    card: dict[str, Any]
    state: dict[str, torch.Tensor]

    @classmethod
    def of(cls, teacher: Teacher) -> "CarriedTeacher":
        return cls(teacher.card, {k: v.detach().cpu() for k, v in teacher.model.state_dict().items()})

    def rebuild(self, pair: Pair, num_classes: int, accel: Accel) -> Teacher:
        return Teacher(accel.model(shipped.build_from_state(pair, num_classes, self.state)), self.card)


def recipe_key(recipe: dict[str, Any]) -> str:
    return f"{recipe.get('model', 'teacher')}-{json_digest(recipe)}"


class Zoo:
    """Teachers under `<root>/teachers/<model>-<recipe hash>/`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or kdbench_home()) / "teachers"

    def folder(self, recipe: dict[str, Any]) -> Path:
        return self.root / recipe_key(recipe)

    def check_writable(self) -> None:
        """Fail early (and write nothing) when teachers could not be cached."""
        problem = writable_dir_problem(self.root)
        if problem:
            raise UsageError(f"the teacher zoo {self.root} is not writable: {problem}; "
                             "set KDBENCH_HOME to a writable folder")

    def cards(self) -> list[dict[str, Any]]:
        out = []
        for card_path in sorted(self.root.glob("*/card.json")):
            try:
                card = json.loads(card_path.read_text())
            except (OSError, ValueError):
                card = None
            if isinstance(card, dict) and all(k in card for k in CARD_KEYS):
                out.append(card)
            else:
                warnings.warn(f"unreadable teacher card {card_path}; ignored")
        return out

    def load(self, pair: Pair, recipe: dict[str, Any], num_classes: int) -> Teacher | None:
        """The cached teacher, verified, or None when it must be (re)trained."""
        folder = self.folder(recipe)
        card_path, weights = folder / "card.json", folder / "model.safetensors"
        if not card_path.is_file():
            return None  # never trained, or training was interrupted before the card
        try:
            card = json.loads(card_path.read_text())
        except (ValueError, OSError):
            card = None
        if not isinstance(card, dict) or any(k not in card for k in CARD_KEYS) or not isinstance(card["sha256"], str):
            warnings.warn(f"teacher card {card_path} is malformed; retraining the teacher")
            return None
        if not weights.is_file():
            warnings.warn(f"teacher checkpoint {weights} is missing; retraining the teacher")
            return None
        actual = sha256_file(weights)
        if actual != card["sha256"]:
            warnings.warn(
                f"teacher checkpoint {weights} is corrupt: its sha256 is {actual[:12]}…, "
                f"its card says {card['sha256'][:12]}…; not loading it, retraining the teacher"
            )
            return None
        torch.manual_seed(TEACHER_SEED)
        model = pair.build_teacher(num_classes)
        load_model(model, str(weights))
        set_teacher_frozen(model)
        return Teacher(model, card)

    def status(self, pair: Pair, profile: str) -> str:
        """Where the pair's teacher for `profile` would come from, without loading it."""
        if profile in getattr(pair, "shipped_profiles", SHIPPED_PROFILES):
            folder = shipped.shipped_dir(pair)
            if folder is not None and shipped.read_card(folder) is not None:
                return "shipped with kdbench"
        return "cached in the zoo" if (self.folder(pair.teacher_recipe(profile)) / "card.json").is_file() \
            else "to be trained"

    def get(
        self,
        pair: Pair,
        profile: str,
        splits: Splits,
        accel: Accel,
        on_step: Callable[[int, float], None] | None = None,
        steps_fraction: float = 1.0,
    ) -> Teacher:
        """Load the pair's teacher for `profile`, training and caching it when needed.

        `steps_fraction` < 1 gives a weaker variant (the `weak-teacher` scenario): the
        same recipe trained for that fraction of the teacher steps (its own short cosine
        schedule, not a snapshot of the full run), a zoo entry with its own card and sha256.
        """
        if steps_fraction == 1.0 and profile in getattr(pair, "shipped_profiles", SHIPPED_PROFILES):
            found = shipped.load(pair, splits.num_classes)  # a tampered checkpoint raises UsageError
            if found is not None:
                model, card = found
                model = accel.model(model)
                # The record's teacher accuracy is on this run's test split (a profile may
                # evaluate a subset); the card's full-test accuracy is kept beside it.
                forward = accel.forward(pair.forward)
                card = {**card, "test_acc_card": card["test_acc"],
                        "test_acc": accuracy(predict(model, forward, splits.test), splits.test.y)}
                return Teacher(model, card)
        recipe = pair.teacher_recipe(profile)
        if steps_fraction != 1.0:
            recipe = {**recipe, "steps_fraction": steps_fraction}
        cached = self.load(pair, recipe, splits.num_classes)
        if cached is not None:
            return Teacher(accel.model(cached.model), {"source": "trained", **cached.card})
        return self.train(pair, profile, recipe, splits, accel, on_step)

    def train(
        self,
        pair: Pair,
        profile: str,
        recipe: dict[str, Any],
        splits: Splits,
        accel: Accel,
        on_step: Callable[[int, float], None] | None = None,
    ) -> Teacher:
        schedule = pair.schedule(profile)
        steps = max(1, round(schedule.teacher_steps * recipe.get("steps_fraction", 1.0)))
        torch.manual_seed(TEACHER_SEED)
        model = accel.model(pair.build_teacher(splits.num_classes))
        forward = accel.forward(pair.forward)
        started = time.perf_counter()
        result = train(
            model, SupervisedLoss(), splits.train, Budget(steps=steps), schedule,
            forward, seed=TEACHER_SEED, lr=schedule.teacher_lr, on_step=on_step,
        )
        set_teacher_frozen(model)
        test_acc = accuracy(predict(model, forward, splits.test), splits.test.y)
        val_acc = accuracy(predict(model, forward, splits.val), splits.val.y)
        folder = self.folder(recipe)
        weights = folder / "model.safetensors"
        with atomic_path(weights) as tmp:
            save_model(model, str(tmp))
        card = {
            "key": recipe_key(recipe),
            "source": "trained",
            "recipe": recipe,
            "profile": profile,
            "test_acc": test_acc,
            "val_acc": val_acc,
            "params": sum(p.numel() for p in model.parameters()),
            "steps": result.steps,
            **accel.describe(),
            "train_seconds": round(time.perf_counter() - started, 3),
            "data_fingerprint": splits.fingerprint,
            "sha256": sha256_file(weights),
            "created": utc_now(),
        }
        atomic_write_text(folder / "card.json", json.dumps(card, indent=2, sort_keys=True))
        return Teacher(model, card)
