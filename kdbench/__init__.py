"""kdbench: a fair, reproducible benchmark of knowledge-distillation methods.

From Python: `kdbench.run(...)`, `kdbench.load(out)` and `kdbench.summary(records)`
(see `kdbench.frames`). For plugins: `Method`, `Pair`, `Outputs`, … (see
`kdbench.api`). Both are imported on first use, so that planning a run and
`kdbench --help` do not import torch.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .budget import Budget
from .env import kdbench_home, offline
from .errors import DataMissing, UsageError
from .hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .api import TAPS, Dataset, Forward, Method, Outputs, Pair, Schedule, Splits, TensorData
    from .frames import load, run, summary

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"

_LAZY = {**dict.fromkeys(("TAPS", "Dataset", "Forward", "Method", "Outputs", "Pair", "Schedule", "Splits",
                           "TensorData"), ".api"),
         **dict.fromkeys(("run", "load", "summary"), ".frames")}

__all__ = [
    "TAPS", "Budget", "DataMissing", "Dataset", "Forward", "Method", "Outputs", "Pair", "Schedule", "Splits",
    "TensorData", "UsageError", "__version__", "hookimpl", "kdbench_home", "load", "offline", "run", "summary",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
