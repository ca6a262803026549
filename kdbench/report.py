"""Statistics over records and the generated leaderboard.

Per (pair, method): mean ± std of test accuracy over seeds, and the paired difference
against each baseline method (same seed = same student init and data order) with a 95%
t-interval. A difference whose interval spans 0 is marked `ns`. Which methods are
baselines, and any paper-specific notes, come from the plugins (`Method.baseline`, the
`kdbench_report_notes` hook): the report itself knows no method by name. The output
depends on the records and the installed plugins alone (no clock, no host lookup), so
the same records always render the same bytes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .results import to_frame

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Registry

GROUP_KEYS = ["pair", "profile", "scenario", "budget_key"]


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


@dataclass(frozen=True)
class Context:
    """What the plugins tell the report: the baselines (the reference first) and a notes hook."""

    baselines: tuple[str, ...] = ()
    registry: "Registry | None" = None

    @property
    def reference(self) -> str | None:
        """The method every verdict, Δ plot and "when does it pay" row is measured against."""
        return self.baselines[0] if self.baselines else None

    @classmethod
    def of(cls, registry: "Registry | None" = None) -> "Context":
        if registry is None:
            from .plugins import load_registry

            registry = load_registry()
        return cls(registry.baselines(), registry)

    def notes(self, frame: pd.DataFrame) -> list[str]:
        """Lines from every `kdbench_report_notes` hook, for "When does distillation pay?"."""
        if self.registry is None or self.reference is None:
            return []
        answers = self.registry.pm.hook.kdbench_report_notes(deltas=Deltas(frame, self.reference))
        return [line for lines in reversed(answers) for line in (lines or [])]


class Deltas:
    """Paired Δ of test accuracy between methods, per (pair, profile, scenario): what a
    `kdbench_report_notes` hook reads (see `kdbench.hookspecs`)."""

    def __init__(self, frame: pd.DataFrame, reference: str) -> None:
        self.frame = frame
        self.reference = reference

    def groups(self) -> list[tuple[str, str, list[str]]]:
        """(pair, profile, its scenarios in name order) for every pair and profile."""
        return [(pair, profile, sorted(g["scenario"].unique()))
                for (pair, profile), g in self.frame.groupby(["pair", "profile"], sort=True)]

    def delta(self, pair: str, profile: str, scenario: str, method: str,
              baseline: str | None = None) -> "PairedDelta | None":
        """Δ(method − baseline), the reference by default; None when either has no records."""
        f = self.frame
        g = f[(f["pair"] == pair) & (f["profile"] == profile) & (f["scenario"] == scenario)]
        return _delta(g, method, baseline or self.reference)


def ok_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Successful records as a flat frame, with the keys tables are grouped by."""
    frame = to_frame([r for r in records if r.get("status") == "ok"])
    if frame.empty:
        return frame
    if "scenario" not in frame:
        frame["scenario"] = "full"
    frame["scenario"] = frame["scenario"].fillna("full")
    frame["budget_key"] = [
        f"{m}:{s}" if m == "steps" else f"{m}:{sec}"
        for m, s, sec in zip(frame["budget.mode"], frame["budget.steps"], frame.get("budget.seconds", [None] * len(frame)))
    ]
    return frame.sort_values(["pair", "method", "seed"], kind="stable").reset_index(drop=True)


def _delta(group: pd.DataFrame, method: str, baseline: str) -> PairedDelta | None:
    if method == baseline:
        return None
    a = group[group["method"] == method].set_index("seed")["metrics.test_acc"]
    b = group[group["method"] == baseline].set_index("seed")["metrics.test_acc"]
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return None
    return paired_delta(a.loc[seeds].tolist(), b.loc[seeds].tolist())


def method_stats(group: pd.DataFrame, ctx: Context) -> list[dict[str, Any]]:
    """Per-method statistics of one table (one pair, profile, scenario and budget)."""
    order = {b: i for i, b in enumerate(ctx.baselines)}
    rows = []
    for method, m in group.groupby("method", sort=False):
        acc = m["metrics.test_acc"]
        rows.append({
            "method": method,
            "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
            "n": len(acc),
            "deltas": {b: _delta(group, method, b) for b in ctx.baselines},
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


def _fmt_flops(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v / 1e6:.2f} M"


def pair_table(group: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """The human-readable table of one group."""
    rows = []
    for s in method_stats(group, ctx):
        pct = s["mean"] * 100
        rows.append({
            "method": s["method"],
            "test acc %": f"{pct:.2f} ± {s['std'] * 100:.2f}" if s["n"] > 1 else f"{pct:.2f}",
            **{f"Δ vs {b}": ("—" if d is None else d.format()) for b, d in s["deltas"].items()},
            "student params": f"{s['params']:,}",
            "adapters": f"{s['adapters']:,}",
            "FLOPs/ex": _fmt_flops(s["flops"]),
            "speedup bs1 / bsN": f"{s['speedup_bs1']:.2f}× / {s['speedup_bsN']:.2f}×",
            "steps": f"{s['steps']:.0f}",
            "train s": f"{s['train_s']:.1f}",
            "seeds": s["n"],
        })
        if not math.isnan(s["agreement"]):  # fidelity and int8 columns: records from issue 9 on
            rows[-1].update({
                "agree %": f"{s['agreement'] * 100:.1f}",
                "KL(T‖S)": f"{s['kl']:.3f}",
            })
        if not math.isnan(s["int8_acc"]):
            rows[-1].update({
                "int8 acc %": f"{s['int8_acc'] * 100:.2f}",
                "int8 ms bs1": f"{s['int8_ms']:.3f}",
                "size float → int8": f"{s['float_bytes'] / 1e6:.2f} → {s['int8_bytes'] / 1e6:.2f} MB",
            })
    return pd.DataFrame(rows)


def groups(frame: pd.DataFrame) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    if frame.empty:  # every cell failed: nothing to group (and no columns to group by)
        return []
    return [(key, g) for key, g in frame.groupby(GROUP_KEYS, sort=True)]


def _budget_words(first: pd.Series) -> str:
    if first["budget.mode"] == "steps":
        return f"{int(first['budget.steps'])} optimizer steps per cell"
    return f"{first['budget.seconds']:g} wall-clock seconds per cell (teacher forwards included)"


def _reference_deltas(stats_rows: list[dict[str, Any]], ctx: Context) -> list[tuple[str, PairedDelta]]:
    """(method, Δ vs the reference baseline) for every method that has one."""
    return [(s["method"], d) for s in stats_rows
            if ctx.reference is not None and (d := s["deltas"][ctx.reference]) is not None]


def _verdict(stats_rows: list[dict[str, Any]], ctx: Context) -> str:
    ref = ctx.reference
    if ref is None:
        return "No baseline method is installed, so no verdict."
    deltas = _reference_deltas(stats_rows, ctx)
    winners = [m for m, d in deltas if d.significant and d.mean > 0]
    losers = [m for m, d in deltas if d.significant and d.mean < 0]
    n = max((s["n"] for s in stats_rows), default=0)
    if n < 2:
        return f"One seed only: no confidence intervals, so no method is shown to beat `{ref}`."
    parts = [(f"Beat `{ref}` with a 95% CI excluding 0: " + ", ".join(f"`{w}`" for w in winners) + ".")
             if winners else f"No method beat `{ref}` with a 95% CI excluding 0."]
    if losers:
        parts.append(f"Significantly below `{ref}`: " + ", ".join(f"`{m}`" for m in losers) + ".")
    return " ".join(parts)


def _slug(*parts: str) -> str:
    return "-".join(p.replace(":", "").replace("/", "_").replace(".", "_") for p in parts if p)


def render_markdown(
    records: list[dict[str, Any]],
    title: str = "kdbench results",
    plots_dir: Path | None = None,
    link_from: Path | None = None,
    command: str | None = None,
    registry: "Registry | None" = None,
) -> str:
    """Markdown report; with `plots_dir`, figures are written there and linked.
    Baselines and notes come from `registry` (default: the installed plugins)."""
    ctx = Context.of(registry)
    frame = ok_frame(records)
    failed = sorted((r for r in records if r.get("status") != "ok"),
                    key=lambda r: (r["pair"], r["method"], r["seed"]))
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Generated by `{command}` from {len(records)} records.", ""]
    summary_at = len(lines)
    if frame.empty:
        lines.append("No successful records.")
    summary: list[str] = []
    for key, g in groups(frame):
        pair, profile, scenario, _ = key
        first = g.iloc[0]
        stats_rows = method_stats(g, ctx)
        heading = f"{pair} — {profile} profile" + ("" if scenario == "full" else f", scenario {scenario}")
        verdict = _verdict(stats_rows, ctx)
        summary.append(f"- **{heading}**: {verdict}")
        lines += [
            f"## {heading}",
            "",
            f"Teacher: test accuracy {first['metrics.teacher_test_acc'] * 100:.2f}%, "
            f"{int(first['params.teacher']):,} params, {_fmt_flops(first.get('flops.teacher'))} FLOPs/example. "
            f"Budget: {_budget_words(first)}. Dataset: {first.get('dataset', '?')}.",
            "",
            pair_table(g, ctx).to_markdown(index=False),
            "",
            verdict,
            "",
        ]
        if plots_dir is not None:
            lines += _figures(g, stats_rows, ctx, heading, Path(plots_dir), link_from,
                              _slug(pair, profile, scenario, key[3]))
    pays = when_it_pays(frame, ctx)
    if summary:
        lines[summary_at:summary_at] = ["## Summary", "", *summary, "", *pays]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [f"- {r['pair']}/{r['method']}/seed{r['seed']}: {r.get('error', '?')}" for r in failed]
        lines.append("")
    lines += [
        "Δ: paired difference in test accuracy, points (same seed = same student init and data order): "
        "mean [95% t-interval]; `ns` = the interval spans 0; `(n=1)` = one seed, no interval. "
        "Speedup = teacher latency / student latency (median, `torch.utils.benchmark`), at batch 1 / a large batch.",
        "",
    ]
    if not frame.empty:
        lines += provenance(frame)
    return "\n".join(lines).rstrip() + "\n"


def when_it_pays(frame: pd.DataFrame, ctx: Context) -> list[str]:
    """"When does distillation pay": per pair and method, Δ vs the reference baseline
    (95% CI) under each scenario. Only when the records hold more than one scenario."""
    ref = ctx.reference
    if frame.empty or frame["scenario"].nunique() < 2 or ref is None:
        return []
    scenarios = sorted(frame["scenario"].unique(), key=lambda s: (s != "full", s))
    rows = []
    for (pair, profile, budget), g in frame.groupby(["pair", "profile", "budget_key"], sort=True):
        for method in sorted(set(g["method"]) - {ref}):
            row = {"pair": pair, "profile": profile, "method": method}
            for sc in scenarios:
                d = _delta(g[g["scenario"] == sc], method, ref)
                row[sc] = "—" if d is None else d.format()
            rows.append(row)
    if not rows:
        return []
    return ["## When does distillation pay?", "",
            f"Δ test accuracy vs `{ref}` (points, paired by seed, 95% t-interval) under each scenario: "
            "`labels-N` = the student sees N% of the labels, `noise-N` = N% of its labels are wrong, "
            "`weak-teacher` = an under-trained teacher.", "",
            pd.DataFrame(rows).to_markdown(index=False), "", *ctx.notes(frame)]


def _figures(g: pd.DataFrame, stats_rows: list[dict[str, Any]], ctx: Context, title: str, plots_dir: Path,
             link_from: Path | None, slug: str) -> list[str]:
    from . import plots

    base = Path(os.path.relpath(plots_dir, link_from)) if link_from else plots_dir
    acc = plots.accuracy_vs_cost(g, title, plots_dir / f"{slug}-accuracy.png")
    delta_rows = pd.DataFrame([
        {"method": m, "delta": d.mean * 100, "low": d.low * 100, "high": d.high * 100, "significant": d.significant}
        for m, d in _reference_deltas(stats_rows, ctx)
    ], columns=["method", "delta", "low", "high", "significant"])
    out = [f"![accuracy per seed]({(base / acc.name).as_posix()})"]
    if not delta_rows.empty:
        dl = plots.deltas(delta_rows, title, plots_dir / f"{slug}-delta.png", str(ctx.reference))
        out.append(f"![Δ vs {ctx.reference}]({(base / dl.name).as_posix()})")
    if "curve" in g and g["curve"].map(lambda c: isinstance(c, list) and len(c) > 0).any():
        bc = plots.budget_curves(g, title, plots_dir / f"{slug}-curves.png")
        out.append(f"![budget curves: val accuracy vs steps and seconds]({(base / bc.name).as_posix()})")
    return [" ".join(out), ""]


def _uniq(series: pd.Series) -> str:
    values = sorted({str(v) for v in series.dropna()})
    return ", ".join(values) if values else "unknown"


def provenance(frame: pd.DataFrame) -> list[str]:
    """Where and how the numbers were produced, from the records themselves."""
    col = lambda name: frame[name] if name in frame else pd.Series(dtype=object)  # noqa: E731
    lines = ["## Provenance", ""]
    lines += [
        f"- kdbench: {_uniq(col('versions.kdbench'))}; git sha: {_uniq(col('git_sha'))}",
        f"- torch {_uniq(col('versions.torch'))}, timm {_uniq(col('versions.timm'))}, "
        f"transformers {_uniq(col('versions.transformers'))}, Python {_uniq(col('versions.python'))}",
        f"- device: {_uniq(col('device'))}; CPU: {_uniq(col('host.cpu'))}; GPU: {_uniq(col('host.gpu'))}; "
        f"threads: {_uniq(col('threads'))}",
        f"- records created: {col('created').min()} … {col('created').max()}",
    ]
    commands = sorted({c for c in col("command").dropna() if c})
    if commands:
        lines += ["- to reproduce:", ""] + [f"  `{c}`" for c in commands]
    return lines + [""]


def render_csv(records: list[dict[str, Any]], registry: "Registry | None" = None) -> str:
    ctx = Context.of(registry)
    frame = ok_frame(records)
    rows = [pair_table(g, ctx).assign(pair=k[0], profile=k[1], scenario=k[2]) for k, g in groups(frame)] \
        if not frame.empty else []
    return pd.concat(rows).to_csv(index=False) if rows else ""
