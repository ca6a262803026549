"""Seaborn figures for the leaderboard, one function per figure, saved as PNG.

Figures are drawn from the same per-(pair, method) statistics as the tables, so a
plot never shows a number the table does not. Every figure of one report colours a
method the same way (`method_colours`), and accuracy figures draw the teacher's.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


@contextmanager
def _fixed_jitter(seed: int = 0) -> Iterator[None]:
    """Seaborn's strip-plot jitter draws from numpy's global generator: seed it for one
    figure (and put the caller's state back) so the same records give the same PNG."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


Colours = dict[str, Any]


def method_colours(methods: Iterable[str]) -> Colours:
    """One colour per method name, the same in every figure drawn with it."""
    names = sorted(set(methods))
    palette = sns.color_palette("tab10" if len(names) <= 10 else "tab20", n_colors=max(len(names), 1))
    return dict(zip(names, palette))


def _teacher_line(ax: Any, acc: float, label: str) -> None:
    """The teacher's accuracy as a dashed reference line, labelled with its value."""
    ax.axhline(acc, ls="--", c="grey", lw=1)
    ax.text(0.01, acc, f" teacher {acc:.2f}%{label}", va="bottom", transform=ax.get_yaxis_transform(),
            fontsize=8, color="grey")


def accuracy_vs_cost(runs: pd.DataFrame, title: str, path: Path, colours: Colours) -> Path:
    """Test accuracy (every seed) against student FLOPs per example, coloured by method.

    The teacher's accuracy is drawn as a reference line, with its FLOPs.
    """
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    data = runs.assign(acc=runs["metrics.test_acc"] * 100, flops=runs["flops.student"] / 1e6)
    with _fixed_jitter():
        sns.stripplot(data=data, x="method", y="acc", hue="method", ax=ax, size=7, jitter=0.15, legend=False,
                      palette=colours)
    teacher = runs.iloc[0]
    _teacher_line(ax, teacher["metrics.teacher_test_acc"] * 100, f" ({teacher['flops.teacher'] / 1e6:.1f} MFLOPs)")
    ax.set_xlabel(f"method (student: {teacher['flops.student'] / 1e6:.2f} MFLOPs, "
                  f"{int(teacher['params.student']):,} params)")
    ax.set_ylabel("test accuracy, % (one point per seed)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    return _save(fig, path)


def deltas(table: pd.DataFrame, title: str, path: Path, reference: str, colours: Colours) -> Path:
    """Paired Δ vs the `reference` baseline per method, with 95% t-interval bars; a filled
    marker when the interval excludes 0, a hollow one when it does not."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    rows = table.dropna(subset=["delta"]).reset_index(drop=True)
    for i, r in rows.iterrows():
        color = colours.get(r["method"], "tab:grey")
        if not (pd.isna(r["low"]) or pd.isna(r["high"])):
            ax.errorbar(r["delta"], i, xerr=[[r["delta"] - r["low"]], [r["high"] - r["delta"]]],
                        fmt="none", ecolor=color, capsize=4)
        ax.scatter(r["delta"], i, color=color if r["significant"] else "white", edgecolors=color, zorder=3)
    y = range(len(rows))
    ax.axvline(0, c="black", lw=1)
    ax.set_yticks(list(y), rows["method"])
    ax.set_xlabel(f"Δ test accuracy vs {reference}, points (95% CI)")
    ax.set_title(title)
    return _save(fig, path)


def curve_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Budget-curve points of every record: one row per (method, seed, point)."""
    rows = []
    for _, r in runs.iterrows():
        curve = r.get("curve")
        if not isinstance(curve, list):
            continue
        for i, p in enumerate(curve):
            rows.append({"method": r["method"], "seed": r["seed"], "point": i, "step": p["step"],
                         "seconds": p["seconds"], "val_acc": p["val_acc"] * 100})
    return pd.DataFrame(rows, columns=["method", "seed", "point", "step", "seconds", "val_acc"])


def budget_curves(runs: pd.DataFrame, title: str, path: Path, colours: Colours,
                  crossovers: dict[str, float] | None = None) -> Path:
    """Validation accuracy against optimizer steps and against training seconds, per method.

    Each line is the mean over seeds at each of the budget's evenly spaced points (the
    seconds axis uses the mean seconds at that point); evaluation time is not included.
    A triangle on the steps axis marks each method's crossover (see `kdbench.stats.crossover`).
    """
    sns.set_theme(style="whitegrid")
    points = curve_points(runs)
    mean = points.groupby(["method", "point"], sort=True)[["step", "seconds", "val_acc"]].mean().reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for method, m in mean.groupby("method", sort=True):
        for ax, x in zip(axes, ("step", "seconds")):
            ax.plot(m[x], m["val_acc"], marker="o", ms=3, color=colours.get(method), label=method)
    _teacher_line(axes[0], runs.iloc[0]["metrics.teacher_test_acc"] * 100, " (test)")
    for method, step in sorted((crossovers or {}).items()):
        axes[0].plot([step], [axes[0].get_ylim()[0]], marker="^", ms=9, color=colours.get(method), clip_on=False,
                     markeredgecolor="black", zorder=5)
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("training seconds (evaluation excluded)")
    axes[0].set_ylabel("validation accuracy, % (mean over seeds)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return _save(fig, path)
