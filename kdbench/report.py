"""Statistics over records and the generated leaderboard.

Per (pair, method): mean ± std of test accuracy over seeds, and the paired difference
against `student-only` and `hinton` (same seed = same student init and data order)
with a 95% t-interval. A difference whose interval spans 0 is marked as such.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .results import to_frame

BASELINES = ("student-only", "hinton")


@dataclass(frozen=True)
class PairedDelta:
    mean: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def format(self, scale: float = 100.0) -> str:
        if self.n < 2:
            return f"{self.mean * scale:+.2f} (n=1)"
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
    frame = to_frame([r for r in records if r.get("status") == "ok"])
    if frame.empty:
        return frame
    frame["budget_key"] = frame.apply(lambda r: f"{r.get('budget.mode')}:{r.get('budget.steps')}:{r.get('budget.seconds')}", axis=1)
    return frame


def _delta(group: pd.DataFrame, method: str, baseline: str) -> PairedDelta | None:
    if method == baseline:
        return None
    a = group[group["method"] == method].set_index("seed")["metrics.test_acc"]
    b = group[group["method"] == baseline].set_index("seed")["metrics.test_acc"]
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return None
    return paired_delta(a.loc[seeds].tolist(), b.loc[seeds].tolist())


def pair_table(group: pd.DataFrame) -> pd.DataFrame:
    """One row per method of one (pair, profile, budget) group."""
    rows = []
    for method, m in group.groupby("method", sort=False):
        acc = m["metrics.test_acc"] * 100
        row = {
            "method": method,
            "test acc %": f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else f"{acc.mean():.2f}",
        }
        for base in BASELINES:
            d = _delta(group, method, base)
            row[f"Δ vs {base}"] = "—" if d is None else d.format()
        row.update({
            "student params": f"{int(m['params.student'].iloc[0]):,}",
            "adapters": f"{int(m['params.adapters'].iloc[0]):,}",
            "speedup bs1": f"{m['speedup_bs1'].mean():.2f}×",
            "train s": f"{m['train.seconds'].mean():.1f}" if "train.seconds" in m else "",
            "seeds": len(m),
        })
        rows.append(row)
    order = {b: i for i, b in enumerate(BASELINES)}
    table = pd.DataFrame(rows)
    table["_o"] = table["method"].map(lambda x: order.get(x, len(order)))
    return table.sort_values(["_o", "method"]).drop(columns="_o").reset_index(drop=True)


def groups(frame: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    return [(key, g) for key, g in frame.groupby(["pair", "profile", "budget_key"], sort=True)]


def render_markdown(records: list[dict[str, Any]], title: str = "kdbench results") -> str:
    frame = ok_frame(records)
    failed = [r for r in records if r.get("status") != "ok"]
    lines = [f"# {title}", ""]
    if frame.empty:
        lines.append("No successful records.")
    for (pair, profile, _), g in groups(frame):
        first = g.iloc[0]
        budget = f"{first['budget.mode']} budget: " + (
            f"{int(first['budget.steps'])} steps" if first["budget.mode"] == "steps" else f"{first['budget.seconds']} s"
        )
        lines += [
            f"## {pair} ({profile} profile)",
            "",
            f"Teacher: test acc {first['metrics.teacher_test_acc'] * 100:.2f}%, "
            f"{int(first['params.teacher']):,} params; {budget}; dataset {first.get('dataset', '?')}.",
            "",
            pair_table(g).to_markdown(index=False),
            "",
        ]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [f"- {r['pair']}/{r['method']}/seed{r['seed']}: {r.get('error', '?')}" for r in failed]
        lines.append("")
    lines.append("Δ: paired difference in test accuracy points (same seed = same init and data order), "
                 "mean [95% t-interval]; ns = the interval spans 0.")
    return "\n".join(lines) + "\n"


def render_csv(records: list[dict[str, Any]]) -> str:
    frame = ok_frame(records)
    rows = [pair_table(g).assign(pair=key[0], profile=key[1]) for key, g in groups(frame)] if not frame.empty else []
    return pd.concat(rows).to_csv(index=False) if rows else ""
