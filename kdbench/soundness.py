"""Is a table believable? Checks of the setup behind the numbers, from the records alone.

- **Teacher margin**: the teacher's test accuracy minus the reference baseline's (the
  student trained alone). A teacher no better than its student gives a benchmark that
  measures nothing.
- **Budget convergence**: the reference baseline's validation accuracy at a step
  budget B and at B/2, two separate runs each with its own schedule (the curve inside
  one run cannot show it: a cosine schedule flattens every curve at its end). The
  budget counts as converged when the two differ by less than `CONVERGED_POINTS`.
  Validation, never test: budgets are chosen on it.
- **Representation collapse**: a phase-boundary check (`phase_checks` in a record,
  see `kdbench.train.representation_check`) whose pooled spread fell below
  `COLLAPSE_SPREAD` of the teacher's: the classifier then sees a near-constant vector.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

#: B and B/2 closer than this (validation accuracy, points) = more training no longer helps.
CONVERGED_POINTS = 0.5
#: A pooled spread under this share of the teacher's at a phase boundary is flagged as a collapse.
COLLAPSE_SPREAD = 0.25


def _reference_runs(frame: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """The reference baseline's step-budget records on full data (empty without a reference)."""
    if frame.empty or reference is None:
        return frame.iloc[0:0]
    return frame[(frame["budget.mode"] == "steps") & (frame["scenario"] == "full") & (frame["method"] == reference)]


def check_only_keys(frame: pd.DataFrame, reference: str | None) -> set[tuple[str, ...]]:
    """Groups (pair, profile, scenario, budget_key) that hold only the reference baseline
    while a fuller table exists for the same pair, profile and scenario: the B/2 runs of
    the convergence check, shown in its table rather than as tables of their own."""
    if frame.empty or reference is None:
        return set()
    out = set()
    for (pair, profile, scenario), g in frame.groupby(["pair", "profile", "scenario"], sort=True):
        by_budget = {k: set(b["method"]) for k, b in g.groupby("budget_key")}
        if len(by_budget) > 1 and any(len(m) > 1 for m in by_budget.values()):
            out |= {(pair, profile, scenario, k) for k, m in by_budget.items() if m == {reference}}
    return out


def convergence(frame: pd.DataFrame, reference: str | None) -> list[dict[str, Any]]:
    """One row per (pair, profile, B) where the reference has step budgets B and B/2."""
    rows: list[dict[str, Any]] = []
    for (pair, profile), g in _reference_runs(frame, reference).groupby(["pair", "profile"], sort=True):
        by_steps = {int(s): b for s, b in g.groupby("budget.steps")}
        for steps, full in sorted(by_steps.items()):
            half = next((b for s, b in by_steps.items() if abs(2 * s - steps) <= 1 and s < steps), None)
            if half is None:
                continue
            at_b, at_half = float(full["metrics.val_acc"].mean() * 100), float(half["metrics.val_acc"].mean() * 100)
            epochs = full["train.epochs"].mean() if "train.epochs" in full else float("nan")
            rows.append({"pair": pair, "profile": profile, "B (steps)": steps, "epochs": epochs,
                         "val at B/2": at_half, "val at B": at_b, "Δ": at_b - at_half,
                         "seeds": f"{len(half)} / {len(full)}", "converged": bool(abs(at_b - at_half) < CONVERGED_POINTS)})
    return rows


def teacher_margins(frame: pd.DataFrame, reference: str | None) -> list[dict[str, Any]]:
    """Per (pair, profile, step budget) with the reference: teacher − student-alone test accuracy."""
    rows: list[dict[str, Any]] = []
    for (pair, profile, steps), g in _reference_runs(frame, reference).groupby(["pair", "profile", "budget.steps"], sort=True):
        teacher, alone = g["metrics.teacher_test_acc"].mean() * 100, g["metrics.test_acc"].mean() * 100
        source = sorted({str(s) for s in g.get("teacher_source", pd.Series(dtype=object)).dropna()})
        rows.append({"pair": pair, "profile": profile, "steps": int(steps), "teacher %": teacher,
                     f"{reference} %": alone, "margin": teacher - alone, "teacher source": ", ".join(source) or "—",
                     "seeds": len(g)})
    return rows


def collapses(records: list[dict[str, Any]]) -> list[str]:
    """One line per cell whose phase-boundary check shows a representation collapse."""
    lines = []
    for r in sorted(records, key=lambda r: (r["pair"], r["method"], r.get("profile", ""), r["seed"])):
        for c in r.get("phase_checks") or []:
            spread, teacher = c.get("pooled_spread"), c.get("teacher_pooled_spread")
            if spread is None or not teacher or spread >= COLLAPSE_SPREAD * teacher:
                continue
            r2 = c.get("hidden_r2")
            lines.append(f"- {r['pair']}/{r['method']}/seed{r['seed']} ({r.get('profile')}), {c.get('at')} "
                         f"(step {c.get('step')}): pooled spread {spread:.4f} vs the teacher's {teacher:.4f}"
                         + (f", hidden R² {r2:.2f}" if r2 is not None else ""))
            break
    return lines


def _fmt(rows: list[dict[str, Any]], floats: dict[str, str]) -> str:
    table = pd.DataFrame(rows)
    for col, spec in floats.items():
        if col in table:
            table[col] = table[col].map(lambda v, s=spec: "—" if pd.isna(v) else format(v, s))
    if "converged" in table:
        table["converged"] = table["converged"].map({True: "yes", False: "**no**"})
    return table.to_markdown(index=False, disable_numparse=True)


def section(frame: pd.DataFrame, records: list[dict[str, Any]], reference: str | None) -> list[str]:
    """The report's "Is the setup sound?" section; empty when there is nothing to check."""
    margins, conv, flags = teacher_margins(frame, reference), convergence(frame, reference), collapses(records)
    if not (margins or conv or flags):
        return []
    out = ["## Is the setup sound?", ""]
    if margins:
        out += [f"Teacher margin: the teacher's test accuracy minus `{reference}`'s (mean over seeds). A teacher no "
                "better than the student alone leaves distillation nothing to transfer.", "",
                _fmt(margins, {"teacher %": ".2f", f"{reference} %": ".2f", "margin": "+.2f"}), ""]
    if conv:
        out += [f"Budget convergence: `{reference}`'s validation accuracy at the budget B and at B/2, two separate "
                f"runs each with its own schedule; converged when they differ by less than {CONVERGED_POINTS} "
                "points.", "",
                _fmt(conv, {"epochs": ".1f", "val at B/2": ".2f", "val at B": ".2f", "Δ": "+.2f"}), ""]
    if flags:
        out += [f"Representation collapse (pooled spread below {COLLAPSE_SPREAD:.0%} of the teacher's at a "
                "phase boundary):", "", *flags, ""]
    return out
