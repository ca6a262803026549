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

import dataclasses
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import soundness
from .stats import (
    GROUP_KEYS,
    Deltas,
    PairedDelta,
    crossover,
    delta_between,
    method_stats,
    ok_frame,
)

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Registry



@dataclass(frozen=True)
class Context:
    """What the plugins tell the report: the baselines (the reference first) and a notes hook."""

    baselines: tuple[str, ...] = ()
    registry: "Registry | None" = None
    colours: dict[str, Any] = field(default_factory=dict)  # method → colour in every figure

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

    def notes(self, frame: pd.DataFrame, hook: str = "kdbench_report_notes") -> list[str]:
        """Lines from every implementation of a report hook (default: the notes for
        "When does distillation pay?"), in plugin registration order."""
        if self.registry is None or self.reference is None or frame.empty:
            return []
        answers = getattr(self.registry.pm.hook, hook)(deltas=Deltas(frame, self.reference))
        return [line for lines in reversed(answers) for line in (lines or [])]


def _fmt_flops(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v / 1e6:.2f} M"


def pair_table(group: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """The human-readable table of one group."""
    rows = []
    for s in method_stats(group, ctx.baselines):
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
        epochs = first.get("train.epochs")
        return f"{int(first['budget.steps'])} optimizer steps per cell" + (
            f" ({epochs:.2f} epochs of the student's training data)" if pd.notna(epochs) else "")
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
    seeds = sorted({d.n for _, d in deltas}) or [n]
    over = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    parts = [f"Paired over {over} seeds:",
             (f"beat `{ref}` with a 95% CI excluding 0: " + ", ".join(f"`{w}`" for w in winners) + ".")
             if winners else f"no method beat `{ref}` with a 95% CI excluding 0."]
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
    if plots_dir is not None and not frame.empty:
        from . import plots

        ctx = dataclasses.replace(ctx, colours=plots.method_colours(frame["method"]))
    failed = sorted((r for r in records if r.get("status") != "ok"),
                    key=lambda r: (r["pair"], r["method"], r["seed"]))
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Generated by `{command}` from {len(records)} records.", ""]
    summary_at = len(lines)
    if frame.empty:
        lines.append("No successful records.")
    summary: list[str] = []
    hidden = soundness.check_only_keys(frame, ctx.reference)
    for key, g in groups(frame):
        if key in hidden:
            continue
        section, verdict_line = _section(key, g, ctx, plots_dir, link_from, _budget_suffix(key, frame))
        lines += section
        summary.append(verdict_line)
    pays = when_it_pays(frame[~_keys(frame).isin(hidden)] if hidden else frame, ctx)
    if summary:
        lines[summary_at:summary_at] = ["## Summary", "", *summary, "", *pays,
                                        *soundness.section(frame, records, ctx.reference),
                                        *ctx.notes(frame, "kdbench_report_sections")]
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


def _keys(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(list(zip(*(frame[k] for k in GROUP_KEYS))), index=frame.index)


def _budget_suffix(key: tuple[str, ...], frame: pd.DataFrame) -> str:
    """", 4300 steps" or ", time-matched: 412.3 s" when a pair, profile and scenario
    have tables at more than one budget; "" otherwise."""
    pair, profile, scenario, budget = key
    same = frame[(frame["pair"] == pair) & (frame["profile"] == profile) & (frame["scenario"] == scenario)]
    if same["budget_key"].nunique() < 2:
        return ""
    label = _budget_label(budget)
    return f", {label}" if budget.startswith("steps:") else f", time budget {label}"


def _section(key: tuple[str, ...], g: pd.DataFrame, ctx: Context, plots_dir: Path | None,
             link_from: Path | None, suffix: str = "") -> tuple[list[str], str]:
    """One table's markdown (heading, teacher, table, verdict, figures) and its summary line."""
    pair, profile, scenario, budget = key
    first = g.iloc[0]
    stats_rows = method_stats(g, ctx.baselines)
    heading = f"{pair} — {profile} profile" + ("" if scenario == "full" else f", scenario {scenario}") + suffix
    verdict = _verdict(stats_rows, ctx)
    lines = [
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
        lines += _figures(g, stats_rows, ctx, heading, Path(plots_dir), link_from, _slug(pair, profile, scenario, budget))
    return lines, f"- **{heading}**: {verdict}"


def _has_curves(frame: pd.DataFrame) -> bool:
    return "curve" in frame and bool(frame["curve"].map(lambda c: isinstance(c, list) and len(c) > 0).any())


def when_it_pays(frame: pd.DataFrame, ctx: Context) -> list[str]:
    """"When does distillation pay": per pair and method, Δ vs the reference baseline
    (95% CI) under each scenario, and where on the budget curve (`full` data) the method
    stops trailing it. Shown when the records hold more than one scenario or budget curves."""
    ref = ctx.reference
    if frame.empty or ref is None or (frame["scenario"].nunique() < 2 and not _has_curves(frame)):
        return []
    scenarios = sorted(frame["scenario"].unique(), key=lambda s: (s != "full", s))
    rows = []
    for (pair, profile, budget), g in frame.groupby(["pair", "profile", "budget_key"], sort=True):
        for method in sorted(set(g["method"]) - {ref}):
            row = {"pair": pair, "profile": profile, "budget": _budget_label(budget), "method": method}
            for sc in scenarios:
                d = delta_between(g[g["scenario"] == sc], method, ref)
                row[sc] = "—" if d is None else d.format()
            c = crossover(g[g["scenario"] == "full"], method, ref)
            row["crossover (full)"] = "—" if c is None else c.format()
            rows.append(row)
    if not rows:
        return []
    return ["## When does distillation pay?", "",
            f"Δ test accuracy vs `{ref}` (points, paired by seed, 95% t-interval) under each scenario: "
            "`labels-N` = the student sees N% of the labels, `noise-N` = N% of its labels are wrong, "
            "`weak-teacher` = an under-trained teacher. Crossover: the first budget-curve point (step, share "
            f"of the budget) from which the method's mean validation Δ vs `{ref}`, paired by seed, stays ≥ 0 "
            "to the end of the budget; \"never within budget\" when it trails at the last point.", "",
            pd.DataFrame(rows).to_markdown(index=False), "", *ctx.notes(frame)]


def _budget_label(budget_key: str) -> str:
    mode, _, value = budget_key.partition(":")
    return f"{int(float(value))} steps" if mode == "steps" else f"{float(value):g} s"


def _figures(g: pd.DataFrame, stats_rows: list[dict[str, Any]], ctx: Context, title: str, plots_dir: Path,
             link_from: Path | None, slug: str) -> list[str]:
    from . import plots

    base = Path(os.path.relpath(plots_dir, link_from)) if link_from else plots_dir
    acc = plots.accuracy_vs_cost(g, title, plots_dir / f"{slug}-accuracy.png", ctx.colours)
    delta_rows = pd.DataFrame([
        {"method": m, "delta": d.mean * 100, "low": d.low * 100, "high": d.high * 100, "significant": d.significant}
        for m, d in _reference_deltas(stats_rows, ctx)
    ], columns=["method", "delta", "low", "high", "significant"])
    out = [f"![accuracy per seed]({(base / acc.name).as_posix()})"]
    if not delta_rows.empty:
        dl = plots.deltas(delta_rows, title, plots_dir / f"{slug}-delta.png", str(ctx.reference), ctx.colours)
        out.append(f"![Δ vs {ctx.reference}]({(base / dl.name).as_posix()})")
    if _has_curves(g):
        marks = {m: c.step for m in set(g["method"]) - {ctx.reference}
                 if ctx.reference and (c := crossover(g, m, ctx.reference)) is not None and c.step is not None}
        bc = plots.budget_curves(g, title, plots_dir / f"{slug}-curves.png", ctx.colours, marks)
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
    remeasured_at = col("costs_remeasured.at").dropna()
    if not remeasured_at.empty:
        lines.append(f"- costs (latency, speedup, sizes) re-measured after training with `kdbench remeasure` for "
                     f"{', '.join(sorted(frame.loc[remeasured_at.index, 'pair'].unique()))} "
                     f"({remeasured_at.min()} … {remeasured_at.max()}); "
                     "each record keeps its cell's own measurement under `costs_remeasured.replaced`")
    commands = sorted({c for c in col("command").dropna() if c} | set(col("costs_remeasured.command").dropna()))
    if commands:
        lines += ["- to reproduce:", ""] + [f"  `{c}`" for c in commands]
    return lines + [""]


def summary(records: list[dict[str, Any]], registry: "Registry | None" = None) -> pd.DataFrame:
    """One row per (pair, profile, scenario, budget, method), every statistic a number.

    Accuracies and Δ are in percentage points; `delta`, `ci_low`, `ci_high` and
    `significant` compare with the reference baseline, `*_vs_NAME` with the others; `n`
    is the number of seeds behind the row."""
    ctx = Context.of(registry)
    frame = ok_frame(records)
    rows = []
    for (pair, profile, scenario, budget), g in groups(frame):
        first = g.iloc[0]
        for s in method_stats(g, ctx.baselines):
            row = {"pair": pair, "profile": profile, "scenario": scenario, "budget": budget, "method": s["method"],
                   "n": s["n"], "mean": s["mean"] * 100, "sd": s["std"] * 100,
                   "teacher_acc": float(first["metrics.teacher_test_acc"]) * 100}
            for b, d in s["deltas"].items():
                tag = "" if b == ctx.reference else f"_vs_{b}"
                row.update({f"delta{tag}": d.mean * 100 if d else math.nan,
                            f"ci_low{tag}": d.low * 100 if d else math.nan,
                            f"ci_high{tag}": d.high * 100 if d else math.nan,
                            f"significant{tag}": d.significant if d else False})
            row.update({"student_params": s["params"], "adapters": s["adapters"], "flops": s["flops"],
                        "speedup_bs1": s["speedup_bs1"], "speedup_bsN": s["speedup_bsN"], "steps": s["steps"],
                        "train_s": s["train_s"], "agreement": s["agreement"] * 100, "int8_acc": s["int8_acc"] * 100})
            rows.append(row)
    return pd.DataFrame(rows).round(4)  # points: 4 decimals are far below any seed's noise


def render_csv(records: list[dict[str, Any]], registry: "Registry | None" = None) -> str:
    return summary(records, registry).to_csv(index=False)


def render_json(records: list[dict[str, Any]], registry: "Registry | None" = None) -> str:
    return summary(records, registry).to_json(orient="records", indent=1) + "\n"


def render_terminal(records: list[dict[str, Any]], title: str, registry: "Registry | None" = None) -> str:
    """The results as a terminal shows them: per table, the teacher above a compact
    table (method, accuracy, Δ vs the reference with its interval, size, speed, time)
    and the verdict with its number of seeds. Fits 100 columns; `--wide` gives the rest."""
    from tabulate import tabulate

    ctx = Context.of(registry)
    frame = ok_frame(records)
    lines = [title, ""]
    hidden = soundness.check_only_keys(frame, ctx.reference)
    for key, g in groups(frame):
        if key in hidden:  # B/2 runs of the convergence check: `report` in markdown tabulates them
            continue
        pair, profile, scenario, _ = key
        first = g.iloc[0]
        stats_rows = method_stats(g, ctx.baselines)
        rows = [[s["method"], f"{s['mean'] * 100:.2f} ± {s['std'] * 100:.2f}" if s["n"] > 1 else f"{s['mean'] * 100:.2f}",
                 _short_delta(s["deltas"].get(ctx.reference) if ctx.reference else None), f"{s['params']:,}",
                 f"{s['speedup_bs1']:.1f}×/{s['speedup_bsN']:.1f}×", f"{s['train_s']:.1f}"] for s in stats_rows]
        ref = ctx.reference or "baseline"
        header = (f"{pair} — {profile}" + ("" if scenario == "full" else f", {scenario}")
                  + f": teacher {first['metrics.teacher_test_acc'] * 100:.2f}%, {int(first['params.teacher']):,} params; "
                  + _budget_words(first).replace(" optimizer steps per cell", " steps").replace(
                      " of the student's training data", ""))
        lines += [textwrap.fill(header, 100, subsequent_indent="  "),
                  tabulate(rows, headers=["method", "acc %", f"Δ vs {ref}", "params", "speedup",
                                          "train s"], tablefmt="simple", disable_numparse=True),
                  textwrap.fill(_verdict(stats_rows, ctx), 100), ""]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines.append(f"{len(failed)} failed cells (see below).")
    return "\n".join(lines).rstrip() + "\n"


def _short_delta(d: PairedDelta | None) -> str:
    if d is None:
        return "—"
    if d.n < 2 or d.zero_spread:
        return d.format().replace("same on all", "same on").replace(": no interval", "")
    return f"{d.mean * 100:+.2f} [{d.low * 100:+.2f}, {d.high * 100:+.2f}]" + ("" if d.significant else " ns")
