"""A cell's training budget: optimizer steps or wall-clock seconds (public, torch-free).

Planning a grid needs budgets before anything heavy is imported, so `Budget` lives
here rather than beside the torch types in `kdbench.api` (which re-exports it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Budget:
    """The training allowance of one cell: optimizer steps, or wall-clock seconds."""

    mode: str = "steps"  # "steps" or "time"
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in {"steps", "time"}:
            raise UsageError(f"budget mode must be 'steps' or 'time', not {self.mode!r}")
        if self.steps is not None and self.steps <= 0:
            raise UsageError(f"the budget must be a positive number of steps, not {self.steps}")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"the budget must be a positive number of seconds, not {self.seconds}")
        if self.mode == "time" and self.seconds is None:
            raise UsageError("--budget-mode time needs --budget-seconds S")
        if self.mode == "steps" and self.seconds is not None:
            raise UsageError("--budget-seconds needs --budget-mode time")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
