"""kdbench: a fair, reproducible benchmark of knowledge-distillation methods."""
from importlib.metadata import PackageNotFoundError, version

from .api import TAPS, Budget, Dataset, Method, Outputs, Pair, Schedule, Splits, TensorData
from .errors import DataMissing, UsageError
from .hookspecs import hookimpl

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"

__all__ = [
    "TAPS", "Budget", "DataMissing", "Dataset", "Method", "Outputs", "Pair", "Schedule", "Splits",
    "TensorData", "UsageError", "__version__", "hookimpl",
]
