"""Records: the JSON result of one cell, its identity, atomic writing and reading.

Records are the only interface between running and reporting. A record's identity
(pair, method, seed, profile, budget, hyper-parameters, teacher sha256, scenario and the
student's digest) names its file, so a re-run finds the cells already done and a changed
setting — the teacher, the student's architecture or its schedule — is a new cell.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .fsutil import TMP_PREFIX, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

IDENTITY_KEYS = ("pair", "method", "seed", "profile", "budget", "hparams", "teacher_sha256", "scenario", "student")
#: A record without a scenario (written before scenarios existed) is in this one.
DEFAULT_SCENARIO = "full"
REQUIRED_KEYS = ("pair", "method", "seed", "profile", "status")


def json_digest(value: Any) -> str:
    """12 hex digits of the sha256 of `value` as sorted-key JSON: cell ids, recipe keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def student_digest(recipe: dict[str, Any]) -> str:
    """A short hash of a pair's `student_recipe`: the record's `student` identity key."""
    return json_digest(recipe)


def scenario_of(record: dict[str, Any]) -> str:
    return record.get("scenario") or DEFAULT_SCENARIO


def cell_id(identity: dict[str, Any]) -> str:
    """A short hash of the identity. The default scenario is left out of the hash, so
    records written before scenarios existed keep their id, and so is a missing student
    digest (records written before it existed: they no longer match any cell, which has one)."""
    keys = {k: identity[k] for k in IDENTITY_KEYS if k not in ("scenario", "student")}
    if identity.get("student") is not None:
        keys["student"] = identity["student"]
    if scenario_of(identity) != DEFAULT_SCENARIO:
        keys["scenario"] = scenario_of(identity)
    return json_digest(keys)


def mixed_setups(records: list[dict[str, Any]]) -> list[str]:
    """One line per (pair, profile, scenario) whose ok records come from more than one
    teacher or student recipe. A changed teacher or student makes new cells (`cell_id`),
    so a folder that keeps the old records beside the new ones would average two setups."""
    setups: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
    for r in records:
        if r.get("status") == "ok":
            key = (r["pair"], str(r.get("profile")), scenario_of(r))
            setups.setdefault(key, set()).add((str(r.get("teacher_sha256"))[:12], str(r.get("student"))))
    return [f"pair {pair!r} ({profile}, {scenario}) has records of {len(found)} setups ("
            + "; ".join(f"teacher {t}, student {st}" for t, st in sorted(found)) + ")"
            for (pair, profile, scenario), found in sorted(setups.items()) if len(found) > 1]


def check_name(kind: str, name: str) -> None:
    """Names become folder names under --out: refuse ones that could leave it."""
    if not name or name in {".", ".."} or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ValueError(f"{kind} name {name!r} cannot be used as a folder name")


def record_path(out: Path, identity: dict[str, Any]) -> Path:
    check_name("pair", identity["pair"])
    check_name("method", identity["method"])
    folder = Path(out) / identity["pair"] / identity["method"]
    if scenario_of(identity) != DEFAULT_SCENARIO:  # the default keeps the original layout
        check_name("scenario", scenario_of(identity))
        folder = folder / scenario_of(identity)
    return folder / f"seed{int(identity['seed'])}-{cell_id(identity)}.json"


def write_record(out: Path, record: dict[str, Any]) -> Path:
    path = record_path(out, record)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


#: What `report` reads from an `ok` record, with the types it needs.
OK_FIELDS = {
    ("metrics", "test_acc"): (int, float),
    ("metrics", "teacher_test_acc"): (int, float),
    ("params", "teacher"): int,
    ("params", "student"): int,
    ("params", "adapters"): int,
    ("budget", "mode"): str,
}


def record_problem(record: Any) -> str | None:
    """Why `record` is not a usable kdbench record, or None when it is."""
    if not isinstance(record, dict):
        return "not a kdbench record (not a JSON object)"
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        return f"not a kdbench record (missing {', '.join(missing)})"
    if not all(isinstance(record[k], str) for k in ("pair", "method", "profile", "status")):
        return "malformed record (pair, method, profile and status must be strings)"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return "malformed record (seed must be an integer)"
    if record["status"] == "ok":
        for (outer, inner), kinds in OK_FIELDS.items():
            value = record.get(outer, {}).get(inner) if isinstance(record.get(outer), dict) else None
            if not isinstance(value, kinds) or isinstance(value, bool):
                return f"malformed record ({outer}.{inner} is missing or has the wrong type)"
    return None


def read_record(path: Path) -> dict[str, Any]:
    """The record in `path`; ValueError when it is torn (invalid JSON) or malformed."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"torn or invalid JSON ({exc.msg} at line {exc.lineno})") from None
    problem = record_problem(record)
    if problem:
        raise ValueError(problem)
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
    import pandas as pd  # here, so that planning a run does not import pandas

    return pd.json_normalize(records)


def host_info(device: Any, threads: int | None = None) -> dict[str, Any]:
    """Where the numbers were measured: CPU model, GPU (if used), threads (default: torch's now)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(device) if str(device).startswith("cuda") else None
    info = {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "threads": threads or torch.get_num_threads()}
    ray = sys.modules.get("ray")  # inside a Ray worker: which node of the cluster
    if ray is not None and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
        info["ray_node"] = ray.get_runtime_context().get_node_id()
    return info


def utc_now() -> str:
    """The timestamp format of records and cards: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    for dist in ("kdbench", "torch", "timm", "transformers", "safetensors"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out
