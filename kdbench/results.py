"""Records: the JSON result of one cell, its identity, atomic writing and reading.

Records are the only interface between running and reporting. A record's identity
(pair, method, seed, profile, budget, hyper-parameters, teacher sha256) names its
file, so a re-run finds the cells already done and a changed setting is a new cell.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .fsutil import TMP_PREFIX, atomic_write_text

IDENTITY_KEYS = ("pair", "method", "seed", "profile", "budget", "hparams", "teacher_sha256")
REQUIRED_KEYS = ("pair", "method", "seed", "profile", "status")


def cell_id(identity: dict[str, Any]) -> str:
    blob = json.dumps({k: identity[k] for k in IDENTITY_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_path(out: Path, identity: dict[str, Any]) -> Path:
    return Path(out) / identity["pair"] / identity["method"] / f"seed{identity['seed']}-{cell_id(identity)}.json"


def write_record(out: Path, record: dict[str, Any]) -> Path:
    path = record_path(out, record)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_record(path: Path) -> dict[str, Any]:
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_KEYS):
        raise ValueError("not a kdbench record (missing keys)")
    return record


def iter_record_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(f for f in sorted(p.rglob("*.json")) if not f.name.startswith(TMP_PREFIX))
        elif p.is_file():
            files.append(p)
    return files


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every readable record under `paths`; torn or malformed files are warned about by path."""
    records = []
    for f in iter_record_files(paths):
        try:
            records.append(read_record(f))
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring {f}: {exc}")
    return records


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records flattened to columns such as `metrics.test_acc`, `params.student`."""
    frame = pd.json_normalize(records)
    return frame


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of kdbench and the libraries that decide its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("kdbench", "torch", "timm", "transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out
