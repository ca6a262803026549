"""kdbench from Python: run a grid, load its records, summarise them — as pandas frames.

    import kdbench

    records = kdbench.run(pairs=["mlp-hinton"], profile="smoke", seeds=2, out="runs/nb")
    table = kdbench.summary(records)        # what `kdbench report --format csv` prints
    again = kdbench.load("runs/nb")         # the same records, read back from disk

`run` takes the CLI's options as keyword arguments (`budget_steps=`, `jobs=`, `threads=`,
`sets=["hinton.temperature=8"]`, …) and, like the CLI, resumes: cells whose record is
already in `out` are read, not run again. A record frame has one row per cell with
columns such as `metrics.test_acc` and `params.student` (records flattened by
`pandas.json_normalize`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .plan import RunConfig, plan
from .results import load_records, to_frame


def run(methods: Sequence[str] | None = None, pairs: Sequence[str] | None = None, *, profile: str = "quick",
        seeds: int = 1, out: str | Path = "runs/latest", sets: Sequence[str] = (), scenarios: Sequence[str] = ("full",),
        plugins: Sequence[str] = (), progress: bool = False, **settings: Any) -> pd.DataFrame:
    """Run (or resume) the grid and return its records, one row per cell.

    `methods`/`pairs` default to every method and pair; `settings` are further
    `RunConfig` fields (`budget_steps`, `jobs`, `threads`, `device`, …)."""
    from .plugins import load_registry
    from .runner import Runner

    config = RunConfig(profile=profile, out=Path(out), progress=progress, plugins=tuple(plugins),
                       command="kdbench.run (Python)", **settings)
    registry = load_registry(config.plugins)
    cells = plan(registry, methods, pairs, seeds, sets, profile=profile, scenarios=scenarios)
    return to_frame(Runner(registry, config).run(cells).records)


def load(*paths: str | Path) -> pd.DataFrame:
    """The records under `paths` (folders or files), one row per cell, as `run` returns them."""
    return to_frame(load_records([Path(p) for p in paths]))


def summary(records: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (pair, profile, scenario, budget, method), every statistic a number:
    `mean`, `sd` and `n` (seeds) of test accuracy, and `delta`, `ci_low`, `ci_high`,
    `significant` against the reference baseline (accuracies and Δ in points)."""
    from .report import summary as summarise

    if isinstance(records, pd.DataFrame):
        records = _unflatten(records)
    return summarise(records)


def _unflatten(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records flattened by `json_normalize` back into nested dicts."""
    out = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, float) and pd.isna(value):
                continue
            *parents, leaf = key.split(".")
            node = record
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        out.append(record)
    return out
