"""Statistics over records: per-method means and paired differences with t-intervals.

Seeds pair cells: at one seed every method on a pair starts from the same student and
sees the same batches, so Δ(method − baseline) is taken seed by seed and its 95%
t-interval says whether it is distinguishable from 0. Seeds that all give the same
difference leave no spread to build an interval from; such a Δ is shown as such and
never counts as significant.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .results import to_frame

GROUP_KEYS = ["pair", "profile", "scenario", "budget_key"]
#: Interval widths (in accuracy, 0–1) at or below this are no interval at all.
ZERO_SPREAD = 1e-9


@dataclass(frozen=True)
class PairedDelta:
    """Mean paired difference over `n` seeds with its 95% t-interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def zero_spread(self) -> bool:
        """Every seed gave the same difference: the t-interval has no width and means nothing."""
        return self.n >= 2 and self.high - self.low <= ZERO_SPREAD

    @property
    def significant(self) -> bool:
        return self.n >= 2 and not self.zero_spread and (self.low > 0 or self.high < 0)

    def format(self, scale: float = 100.0) -> str:
        if self.n < 2:
            return f"{self.mean * scale:+.2f} (n=1)"
        if self.zero_spread:
            return f"{self.mean * scale:+.2f} (same on all {self.n} seeds: no interval)"
        mark = "" if self.significant else " ns"
        return f"{self.mean * scale:+.2f} [{self.low * scale:+.2f}, {self.high * scale:+.2f}]{mark}"


def paired_delta(values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> PairedDelta:
    """Mean of `values - baseline` (paired by position) with a t-interval."""
    d = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return PairedDelta(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDelta(mean, mean - half, mean + half, n)


def ok_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Successful records as a flat frame, with the keys tables are grouped by."""
    frame = to_frame([r for r in records if r.get("status") == "ok"])
    if frame.empty:
        return frame
    if "scenario" not in frame:
        frame["scenario"] = "full"
    frame["scenario"] = frame["scenario"].fillna("full")
    frame["budget_key"] = [
        # int(), :g: beside time-budget records (no steps) the steps column is float
        f"{m}:{int(s)}" if m == "steps" else f"{m}:{float(sec):g}"
        for m, s, sec in zip(frame["budget.mode"], frame["budget.steps"], frame.get("budget.seconds", [None] * len(frame)))
    ]
    ok = [r for r in records if r.get("status") == "ok"]
    labels: dict[int, str] = {}
    for key in {(r["pair"], r.get("profile")) for r in ok}:  # a sweep on one pair names only that pair's cells
        at = [i for i, r in enumerate(ok) if (r["pair"], r.get("profile")) == key]
        labels.update(zip(at, variant_labels([ok[i] for i in at])))
    frame["method"] = [labels[i] for i in range(len(ok))]
    return frame.sort_values(["pair", "method", "seed"], kind="stable").reset_index(drop=True)


def variant_labels(records: list[dict[str, Any]]) -> list[str]:
    """Each record's method, named apart when the records hold one method at several
    hyper-parameter settings: `hinton[temperature=20.0]` beside `hinton[temperature=4.0]`,
    naming only the keys whose values differ, so a sweep's cells are never averaged together."""
    settings: dict[str, dict[str, set[str]]] = {}
    for r in records:
        for key, value in (r.get("hparams") or {}).items():
            settings.setdefault(r["method"], {}).setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    labels = []
    for r in records:
        varied = sorted(k for k, v in settings.get(r["method"], {}).items() if len(v) > 1)
        hp = r.get("hparams") or {}
        labels.append(r["method"] + (f"[{','.join(f'{k}={hp.get(k)}' for k in varied)}]" if varied else ""))
    return labels


def delta_between(group: pd.DataFrame, method: str, baseline: str) -> PairedDelta | None:
    """Δ(method − baseline) over the seeds both have in `group`; None when either has none."""
    if method == baseline:
        return None
    a = group[group["method"] == method].set_index("seed")["metrics.test_acc"]
    b = group[group["method"] == baseline].set_index("seed")["metrics.test_acc"]
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return None
    return paired_delta(a.loc[seeds].tolist(), b.loc[seeds].tolist())


def method_stats(group: pd.DataFrame, baselines: Sequence[str]) -> list[dict[str, Any]]:
    """Per-method statistics of one table (one pair, profile, scenario and budget), baselines first."""
    order = {b: i for i, b in enumerate(baselines)}
    rows = []
    for method, m in group.groupby("method", sort=False):
        acc = m["metrics.test_acc"]
        rows.append({
            "method": method,
            "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
            "n": len(acc),
            "deltas": {b: delta_between(group, method, b) for b in baselines},
            "params": int(m["params.student"].iloc[0]),
            "adapters": int(m["params.adapters"].iloc[0]),
            "flops": m["flops.student"].iloc[0] if "flops.student" in m else math.nan,
            "speedup_bs1": float(m["speedup_bs1"].mean()),
            "speedup_bsN": float(m["speedup_bsN"].mean()) if "speedup_bsN" in m else math.nan,
            "train_s": float(m["train.seconds"].mean()),
            "agreement": _mean(m, "metrics.agreement"),
            "kl": _mean(m, "metrics.kl_teacher_student"),
            "int8_acc": _mean(m, "quantized.test_acc"),
            "int8_ms": _mean(m, "quantized.latency_ms_bs1"),
            "int8_bytes": _mean(m, "quantized.size_bytes"),
            "float_bytes": _mean(m, "size_bytes.student"),
            "steps": float(m["train.steps"].mean()),
        })
    return sorted(rows, key=lambda r: (order.get(r["method"], len(order)), r["method"]))


def _mean(m: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(m[column], errors="coerce").mean()) if column in m else math.nan


def main_budget(rows: pd.DataFrame) -> str:
    """The budget most methods ran at; on a tie a step budget (the profile's) before a
    time-matched one, then the longer. B/2 convergence cells and time-matched tables sit
    beside a pair's main table under the same scenario."""
    methods = rows.groupby("budget_key")["method"].nunique()

    def rank(key: str) -> tuple[int, bool, float]:
        mode, _, value = key.partition(":")
        return int(methods[key]), mode == "steps", float(value)
    return max(methods.index, key=rank)


class Deltas:
    """Paired Δ of test accuracy between methods, per (pair, profile, scenario) at that
    table's main budget: what a `kdbench_report_notes` hook reads (see `kdbench.hookspecs`)."""

    def __init__(self, frame: pd.DataFrame, reference: str) -> None:
        self.frame = frame
        self.reference = reference

    def groups(self) -> list[tuple[str, str, list[str]]]:
        """(pair, profile, its scenarios in name order) for every pair and profile."""
        return [(pair, profile, sorted(g["scenario"].unique()))
                for (pair, profile), g in self.frame.groupby(["pair", "profile"], sort=True)]

    def _rows(self, pair: str, profile: str, scenario: str) -> pd.DataFrame:
        """That table's records at its main budget, so a seed is never paired across budgets."""
        f = self.frame
        rows = f[(f["pair"] == pair) & (f["profile"] == profile) & (f["scenario"] == scenario)]
        return rows[rows["budget_key"] == main_budget(rows)] if not rows.empty else rows

    def delta(self, pair: str, profile: str, scenario: str, method: str,
              baseline: str | None = None) -> "PairedDelta | None":
        """Δ(method − baseline), the reference by default; None when either has no records.
        `method` is a table's row name (`hinton`, or `hinton[temperature=20.0]` in a sweep)."""
        return delta_between(self._rows(pair, profile, scenario), method, baseline or self.reference)

    def methods(self, pair: str, profile: str, scenario: str) -> dict[str, dict[str, Any]]:
        """Each row name in that table → its hyper-parameters (of its first record)."""
        g = self._rows(pair, profile, scenario)
        hp_columns = [c for c in g.columns if c.startswith("hparams.")]
        return {m: {c.removeprefix("hparams."): rows.iloc[0][c] for c in hp_columns if pd.notna(rows.iloc[0][c])}
                for m, rows in g.groupby("method", sort=True)}

    def accuracy(self, pair: str, profile: str, scenario: str, method: str) -> tuple[float, int, int] | None:
        """(mean test accuracy, seeds, test examples) of a row, or None."""
        rows = self._rows(pair, profile, scenario)
        rows = rows[rows["method"] == method]
        if rows.empty:
            return None
        examples = rows.iloc[0].get("scenario_info.test_examples")
        return float(rows["metrics.test_acc"].mean()), len(rows), int(examples) if pd.notna(examples) else 0

    def teacher_accuracy(self, pair: str, profile: str) -> float | None:
        rows = self.frame[(self.frame["pair"] == pair) & (self.frame["profile"] == profile)]
        return None if rows.empty else float(rows.iloc[0]["metrics.teacher_test_acc"])


@dataclass(frozen=True)
class Crossover:
    """Where on the budget curve a method stops trailing the baseline for good: the first
    curve point from which its mean validation Δ (paired by seed) stays ≥ 0 to the end."""

    point: int | None  # index of that curve point; None: never within the budget
    step: float | None  # its optimizer step (mean over seeds)
    points: int  # curve points compared

    @property
    def fraction(self) -> float | None:
        return None if self.point is None else (self.point + 1) / self.points

    def format(self) -> str:
        if self.point is None:
            return "never within budget"
        return f"step {self.step:.0f} ({self.fraction:.0%})"


def _curves(group: pd.DataFrame, method: str) -> dict[int, list[dict[str, float]]]:
    rows = group[group["method"] == method]
    if "curve" not in rows:
        return {}
    return {int(s): c for s, c in zip(rows["seed"], rows["curve"]) if isinstance(c, list) and c}


def crossover(group: pd.DataFrame, method: str, baseline: str) -> Crossover | None:
    """`method`'s crossover against `baseline` in one table; None without paired curves."""
    a, b = _curves(group, method), _curves(group, baseline)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    n = min(min(len(a[s]), len(b[s])) for s in seeds)
    deltas = [float(np.mean([a[s][i]["val_acc"] - b[s][i]["val_acc"] for s in seeds])) for i in range(n)]
    first = next((i for i in range(n) if all(d >= 0 for d in deltas[i:])), None)
    step = None if first is None else float(np.mean([a[s][first]["step"] for s in seeds]))
    return Crossover(first, step, n)
