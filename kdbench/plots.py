"""Seaborn figures for the leaderboard, one function per figure, saved as PNG.

Figures are drawn from the same per-(pair, method) statistics as the tables, so a
plot never shows a number the table does not.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .fsutil import atomic_path  # noqa: E402

#: Fixed metadata so re-rendering the same records gives the same PNG bytes.
PNG_METADATA = {"Software": "kdbench"}


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    return path


def accuracy_vs_cost(runs: pd.DataFrame, pair: str, path: Path) -> Path:
    """Test accuracy (every seed) against student FLOPs per example, coloured by method.

    The teacher is drawn as a reference point at its own FLOPs.
    """
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    data = runs.assign(acc=runs["metrics.test_acc"] * 100, flops=runs["flops.student"] / 1e6)
    sns.stripplot(data=data, x="method", y="acc", hue="method", ax=ax, size=7, jitter=0.15, legend=False)
    teacher = runs.iloc[0]
    ax.axhline(teacher["metrics.teacher_test_acc"] * 100, ls="--", c="grey", lw=1)
    ax.text(0.01, teacher["metrics.teacher_test_acc"] * 100, f" teacher ({teacher['flops.teacher'] / 1e6:.1f} MFLOPs)",
            va="bottom", transform=ax.get_yaxis_transform(), fontsize=8, color="grey")
    ax.set_xlabel(f"method (student: {teacher['flops.student'] / 1e6:.2f} MFLOPs, "
                  f"{int(teacher['params.student']):,} params)")
    ax.set_ylabel("test accuracy, % (one point per seed)")
    ax.set_title(pair)
    ax.tick_params(axis="x", rotation=20)
    return _save(fig, path)


def deltas(table: pd.DataFrame, pair: str, path: Path) -> Path:
    """Paired Δ vs student-only per method, with 95% t-interval bars."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    rows = table.dropna(subset=["delta"]).reset_index(drop=True)
    for i, r in rows.iterrows():
        color = "tab:green" if r["significant"] else "tab:grey"
        if not (pd.isna(r["low"]) or pd.isna(r["high"])):
            ax.errorbar(r["delta"], i, xerr=[[r["delta"] - r["low"]], [r["high"] - r["delta"]]],
                        fmt="none", ecolor=color, capsize=4)
        ax.scatter(r["delta"], i, color=color, zorder=3)
    y = range(len(rows))
    ax.axvline(0, c="black", lw=1)
    ax.set_yticks(list(y), rows["method"])
    ax.set_xlabel("Δ test accuracy vs student-only, points (95% CI)")
    ax.set_title(pair)
    return _save(fig, path)
