"""Scenarios: the regime a student learns in — scarce labels, noisy labels, a weak teacher.

A scenario changes the *student's* training data (or which zoo teacher it distils),
never the validation or test splits and never the pair or the method, so one method
is compared across regimes on the same footing. Every random choice is seeded by the
cell seed alone: at a given seed every method sees the same subset or the same flipped
labels (paired comparisons), and different seeds see different ones.

Names are matched against a registry of patterns (`SCENARIOS`), e.g. `labels-3`
(a class-stratified 3% of the train split), `noise-40` (40% of the student's labels
replaced by a uniformly random wrong class), `weak-teacher` (a teacher trained for a
fraction of the zoo teacher's steps, a zoo entry of its own with its own card).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import Tensor

from .api import TensorData
from .errors import UsageError

#: Added to the cell seed so scenario draws never coincide with init / data-order draws.
SCENARIO_SEED = 7_919

#: `weak-teacher` without a number: this percentage of the zoo teacher's steps.
WEAK_TEACHER_PERCENT = 10


@dataclass(frozen=True)
class StudentData:
    """The student's training data under a scenario.

    `indices` are positions in the full train split when the scenario keeps a subset
    (cached teacher logits are subset with them); None when every example is kept in
    order. `info` goes into the record (`scenario_info`).
    """

    data: TensorData
    indices: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A named regime: how to derive the student's data, and which teacher to distil."""

    name: str
    student_data: Callable[[TensorData, int, int], StudentData]  # (train, num_classes, seed)
    teacher_steps_fraction: float = 1.0  # < 1: a weaker zoo teacher, trained for fewer steps

    def apply(self, train: TensorData, num_classes: int, seed: int) -> StudentData:
        return self.student_data(train, num_classes, seed)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(SCENARIO_SEED + int(seed))


def whole(train: TensorData, num_classes: int, seed: int) -> StudentData:
    return StudentData(train, None, {"train_examples": len(train)})


def stratified_subset(labels: Tensor, percent: float, seed: int, num_classes: int) -> Tensor:
    """Sorted indices of a class-stratified `percent`% of `labels` (at least one per present class)."""
    g = _generator(seed)
    y = labels.cpu()
    keep = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        if len(members) == 0:
            continue
        k = max(1, round(len(members) * percent / 100))
        keep.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(keep).sort().values


def flip_labels(labels: Tensor, percent: float, seed: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """(new labels, flipped positions): exactly round(`percent`% · n) labels moved to a
    uniformly random *other* class."""
    g = _generator(seed)
    y = labels.cpu().clone()
    k = round(len(y) * percent / 100)
    where = torch.randperm(len(y), generator=g)[:k].sort().values
    shift = torch.randint(1, num_classes, (k,), generator=g)  # 1..C-1: never the true class
    y[where] = (y[where] + shift) % num_classes
    return y.to(labels.device), where


def labels_scenario(percent: float) -> Callable[[TensorData, int, int], StudentData]:
    def apply(train: TensorData, num_classes: int, seed: int) -> StudentData:
        idx = stratified_subset(train.y, percent, seed, num_classes)
        return StudentData(train.index(idx.to(train.y.device)), idx,
                           {"train_examples": len(idx), "labels_percent": percent})
    return apply


def noise_scenario(percent: float) -> Callable[[TensorData, int, int], StudentData]:
    def apply(train: TensorData, num_classes: int, seed: int) -> StudentData:
        y, where = flip_labels(train.y, percent, seed, num_classes)
        return StudentData(replace(train, y=y), None,
                           {"train_examples": len(train), "noise_percent": percent, "flipped": len(where)})
    return apply


def _percent(match: re.Match[str], name: str) -> float:
    value = float(match.group(1))
    if not 0 < value <= 100:
        raise UsageError(f"scenario {name!r}: the percentage must be in (0, 100]")
    return value


def _labels(m: re.Match[str], name: str) -> Scenario:
    return Scenario(name, labels_scenario(_percent(m, name)))


def _noise(m: re.Match[str], name: str) -> Scenario:
    p = _percent(m, name)
    if p >= 100:
        raise UsageError(f"scenario {name!r}: at most 99% of the labels can be flipped")
    return Scenario(name, noise_scenario(p))


def _weak(m: re.Match[str], name: str) -> Scenario:
    p = _percent(m, name) if m.group(1) else WEAK_TEACHER_PERCENT
    return Scenario(name, whole, teacher_steps_fraction=p / 100)


#: name pattern (full match) → factory(match, name). Third parties may not add to this
#: at run time (no global mutable state); a new regime is a new entry here.
SCENARIOS: dict[str, Callable[[re.Match[str], str], Scenario]] = {
    r"full": lambda m, name: Scenario(name, whole),
    r"labels-(\d+(?:\.\d+)?)": _labels,
    r"noise-(\d+(?:\.\d+)?)": _noise,
    r"weak-teacher(?:-(\d+(?:\.\d+)?))?": _weak,
}

EXAMPLES = ("full", "labels-3", "labels-10", "noise-40", "weak-teacher", "weak-teacher-20")


def get(name: str) -> Scenario:
    """The scenario called `name`; UsageError for an unknown name."""
    for pattern, factory in SCENARIOS.items():
        m = re.fullmatch(pattern, name)
        if m:
            return factory(m, name)
    raise UsageError(f"unknown scenario {name!r}; known: {', '.join(EXAMPLES)} "
                     "(labels-N: N% of the labels, noise-N: N% wrong labels, weak-teacher[-N]: N% of teacher steps)")
