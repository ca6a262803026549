"""kdbench: a fair, reproducible benchmark of knowledge-distillation methods.

The plugin API (`Method`, `Pair`, `Outputs`, …) is imported on first use, so that
planning a run and `kdbench --help` do not import torch.
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

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"

_API = ("TAPS", "Dataset", "Forward", "Method", "Outputs", "Pair", "Schedule", "Splits", "TensorData")

__all__ = [
    "TAPS", "Budget", "DataMissing", "Dataset", "Forward", "Method", "Outputs", "Pair", "Schedule", "Splits",
    "TensorData", "UsageError", "__version__", "hookimpl", "kdbench_home", "offline",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
