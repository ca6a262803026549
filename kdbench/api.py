"""The public types plugin authors use: Method, Pair, Dataset, Outputs, Budget.

A method sees `Outputs` and labels, never a model class; a pair says how to build the
teacher and the student and which taps both expose; a dataset hands back in-memory
tensors with fixed splits. Everything here is plain data plus a few overridable hooks.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from .budget import Budget
from .errors import UsageError, suggest
from .outputs import TAPS, Outputs
from .taps import outputs

#: How a pair runs a model: (model, inputs, taps wanted) → `Outputs`.
Forward = Callable[[nn.Module, Any, frozenset[str]], Outputs]

__all__ = ["TAPS", "Budget", "Dataset", "Forward", "Method", "Outputs", "Pair", "Schedule", "Splits", "TensorData"]


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Cast a `--set` value (often a string) to the type of its default."""
    if default is None or not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return low in {"true", "1", "yes"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            out = float(value)
            if not math.isfinite(out):
                raise ValueError(value)
            return out
        if isinstance(default, (list, tuple)):
            parts = [p for p in value.replace(";", ",").split(",") if p.strip()]
            kind = type(default[0]) if default else str
            return type(default)(kind(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"hyper-parameter {key}={value!r} is not a valid {type(default).__name__}"
        ) from None
    return value


class Method:
    """A distillation method: a loss over student and teacher `Outputs` plus labels.

    Subclasses set `name`, `needs` (the taps `loss` reads) and `defaults` (the
    hyper-parameters, overridable with `--set name.key=value`) and implement `loss`.
    `self.progress` is the fraction of the budget spent (0 → 1); the training loop
    updates it before every step, so phased schedules need no private loop.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str] | set[str]] = frozenset({"logits"})
    defaults: ClassVar[dict[str, Any]] = {}
    #: Where each default comes from (paper section, official repository file), shown by
    #: `kdbench show METHOD`; a default without an entry is the plugin author's choice.
    sources: ClassVar[dict[str, str]] = {}
    #: False for methods that never look at the teacher (the loop then skips it).
    uses_teacher: ClassVar[bool] = True
    #: A baseline's rank in reports: 0 is the reference every verdict and Δ plot is
    #: measured against (`student-only`); 1, 2, … add Δ columns. None: not a baseline.
    baseline: ClassVar[int | None] = None

    def __init__(self, **overrides: Any) -> None:
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            key = sorted(unknown)[0]
            raise UsageError(
                f"method {self.name!r} has no hyper-parameter {key!r}"
                + suggest(key, self.defaults, "known: ")
            )
        values = {k: _coerce(f"{self.name}.{k}", overrides.get(k, v), v) for k, v in self.defaults.items()}
        self.hp = SimpleNamespace(**values)
        self.progress = 0.0

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def adapters(self, student: Outputs, teacher: Outputs) -> nn.Module | None:
        """Build learnable modules (projections, branches) from sample outputs.

        Keep a reference on `self` to use them in `loss`; return them so they train
        with the student. They are counted apart from the deployable student.
        """
        return None

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        """Named scalar loss terms; the loop sums them."""
        raise NotImplementedError

    def phases(self) -> "list[Phase] | None":
        """Separate trainings inside the cell's one budget, in order; None (default): one.

        At each boundary the loop builds a fresh optimizer and schedule (see `Phase`).
        Within phase i, `self.progress` runs from the sum of the earlier fractions to
        that plus fraction i, so `loss` can tell phases apart by progress alone.
        """
        return None


#: Learning-rate shapes a `Phase` can ask for, over the phase's own budget.
PHASE_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Phase:
    """One phase of a method: a separate training with its own optimizer and schedule.

    `fraction` is its share of the cell's budget (steps, or seconds in time mode); the
    fractions of a method's phases sum to 1. The learning rate is the cell's (the
    pair's schedule) times `lr_scale`, shaped over the phase by `schedule`: constant,
    linear decay to 0, or cosine to 0, after a linear warm-up from 0 over the first
    `warmup` share of the phase.
    """

    name: str
    fraction: float
    schedule: str = "cosine"
    warmup: float = 0.0
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in PHASE_SCHEDULES:
            raise UsageError(f"phase {self.name!r}: schedule must be one of {', '.join(PHASE_SCHEDULES)}, "
                             f"not {self.schedule!r}")
        if not 0.0 <= self.fraction <= 1.0 or not 0.0 <= self.warmup < 1.0 or not self.lr_scale > 0:
            raise UsageError(f"phase {self.name!r}: fraction must be in [0, 1], warmup in [0, 1) and lr_scale "
                             f"positive (got {self.fraction}, {self.warmup}, {self.lr_scale})")

    def lr_factor(self, progress: float) -> float:
        """The multiplier on the phase's learning rate at `progress` (0 → 1) through the phase."""
        if progress < self.warmup:
            return progress / self.warmup
        rest = (progress - self.warmup) / (1.0 - self.warmup)
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "linear":
            return max(0.0, 1.0 - rest)
        return 0.5 * (1.0 + math.cos(math.pi * rest))


@dataclass(frozen=True)
class Schedule:
    """How one pair trains under one profile: sizes, steps and optimiser settings."""

    steps: int
    teacher_steps: int
    batch_size: int = 128
    lr: float = 1e-3
    teacher_lr: float = 1e-3
    weight_decay: float = 0.0
    train_limit: int | None = None  # examples of the train split used (None = all)
    eval_limit: int | None = None  # examples of val/test evaluated (None = all)
    grad_clip: float = 10.0
    #: Linear warm-up share of a one-phase training (methods without `phases`); models
    #: trained from random initialisation diverge at some seeds without it.
    warmup: float = 0.0
    #: Pair-specific settings, e.g. `max_len`, or `group_by_length` (batches of similar
    #: length, see `kdbench.data.batch_indices`; for data with `TensorData.lengths`).
    extra: Mapping[str, Any] = field(default_factory=dict)


class Pair:
    """A teacher/student pair on one dataset.

    `build_student` receives the (trained) teacher so a student can be initialised
    from it (DistilBERT-style); it must be deterministic given the global torch seed.
    """

    name: ClassVar[str] = ""
    dataset: ClassVar[str] = ""
    taps: ClassVar[frozenset[str] | set[str]] = frozenset({"logits"})
    schedules: ClassVar[dict[str, Schedule]] = {}
    #: Whether training batches are randomly augmented (then teacher outputs cannot be cached).
    augmented: ClassVar[bool] = False
    #: The student's architecture and initialisation as data (a timm spec, layer sizes,
    #: where its weights come from): with its schedule, what `student_recipe` names.
    student_spec: ClassVar[Mapping[str, Any] | None] = None
    #: Set by `build_student` when the student starts from a pre-trained body (see
    #: `kdbench.student_zoo`): that body's card, with what it cost; records keep it.
    student_card: dict[str, Any] | None = None
    #: Whether long work inside `build_student` (training a pre-trained body) may show a
    #: progress bar; the runner sets it from `kdbench run --quiet`.
    progress: bool = True

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def schedule(self, profile: str) -> Schedule:
        if profile not in self.schedules:
            raise UsageError(
                f"pair {self.name!r} has no profile {profile!r}" + suggest(profile, self.schedules, "known: ")
            )
        return self.schedules[profile]

    def student_recipe(self, profile: str) -> dict[str, Any]:
        """What defines the student a cell trains besides its budget: `student_spec` and the
        schedule's student fields (steps and the teacher's fields left out: the budget and the
        teacher's sha256 name them). Its digest is part of every record's identity, so a
        record made with another student or schedule is never resumed as this one's."""
        fields = dataclasses.asdict(self.schedule(profile))
        for key in ("steps", "teacher_steps", "teacher_lr"):
            fields.pop(key)
        return {"spec": dict(self.student_spec) if self.student_spec is not None else None, "schedule": fields}

    def dataset_options(self, profile: str) -> dict[str, Any]:
        """Keyword arguments for the dataset's `load` (a tokenizer, a sequence length)."""
        return {}

    def teacher_recipe(self, profile: str) -> dict[str, Any]:
        """What identifies the teacher in the zoo; pairs with equal recipes share one."""
        raise NotImplementedError

    def build_teacher(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def build_student(self, teacher: nn.Module, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, model: nn.Module, inputs: Any, needs: frozenset[str] | set[str]) -> Outputs:
        """Run `model` and expose the taps in `needs` (default: see `kdbench.taps`)."""
        return outputs(model, inputs, frozenset(needs))

    def downloads(self, profile: str) -> list[str]:
        """What running this pair at `profile` fetches from the network (for `--dry-run`)."""
        return []

    def example_inputs(self, splits: "Splits", batch_size: int) -> Any:
        """Inputs used to time and count FLOPs; the first `batch_size` test examples."""
        return splits.test.take(batch_size).x


@dataclass
class TensorData:
    """One split in memory: `x` a tensor or a dict of tensors (text), `y` int labels.

    `lengths` (one per example, on `y`'s device), when the data has them, is each
    example's real size, e.g. its token count: what `Schedule.extra["group_by_length"]`
    batches by. It moves and is indexed with the rest, so a training step never syncs.
    """

    x: Tensor | dict[str, Tensor]
    y: Tensor
    lengths: Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def index(self, idx: Tensor) -> "TensorData":
        lengths = None if self.lengths is None else self.lengths[idx]
        if isinstance(self.x, dict):
            return TensorData({k: v[idx] for k, v in self.x.items()}, self.y[idx], lengths)
        return TensorData(self.x[idx], self.y[idx], lengths)

    def take(self, n: int | None) -> "TensorData":
        if n is None or n >= len(self):
            return self
        return self.index(torch.arange(n))

    def to(self, device: torch.device | str) -> "TensorData":
        lengths = None if self.lengths is None else self.lengths.to(device)
        if isinstance(self.x, dict):
            return TensorData({k: v.to(device) for k, v in self.x.items()}, self.y.to(device), lengths)
        return TensorData(self.x.to(device), self.y.to(device), lengths)


@dataclass
class Splits:
    """Fixed train / validation / test splits; test is read only for final evaluation."""

    train: TensorData
    val: TensorData
    test: TensorData
    num_classes: int
    fingerprint: str = ""  # identifies the data (for the teacher card)


class Dataset:
    """A named data source loaded into memory as tensors with fixed splits."""

    name: ClassVar[str] = ""
    num_classes: ClassVar[int] = 0

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def load(self, data_dir: Path | None = None, **options: Any) -> Splits:
        raise NotImplementedError
