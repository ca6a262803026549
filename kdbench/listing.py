"""What `kdbench list` and `kdbench show` print: the registry, sized to the terminal.

Descriptions wrap to the terminal's width (tabulate's column wrapping), so a listing
never runs off the right edge; `show` gives one method's hyper-parameters with their
defaults, types and where each default comes from.
"""
from __future__ import annotations

import shutil
import textwrap
from typing import Any

from tabulate import tabulate

from .plugins import Entry, Registry

#: Used when the output is not a terminal (a pipe, a file, a test).
DEFAULT_WIDTH = 100


def terminal_width() -> int:
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def _detail(kind: str, entry: Entry) -> str:
    if kind == "methods":
        return "needs " + ",".join(sorted(entry.obj.needs))
    if kind == "pairs":
        return f"{entry.obj.dataset}; taps " + ",".join(sorted(entry.obj.taps))
    return ""


def fit(rows: list[list[str]], width: int, **options: Any) -> str:
    """`rows` as a table whose last column wraps so that every line fits `width`
    (down to a last column of 20 characters)."""
    if not rows:
        return ""
    fixed = [None] * (len(rows[0]) - 1)
    last = width
    while True:
        text = tabulate(rows, maxcolwidths=[*fixed, last], disable_numparse=True, **options)
        if max(len(line) for line in text.splitlines()) <= width or last <= 20:
            return text
        last -= max(1, max(len(line) for line in text.splitlines()) - width)


def render_list(registry: Registry, kinds: list[str], width: int | None = None) -> str:
    """Methods, pairs and datasets with where each came from; broken plugins last."""
    width = width or terminal_width()
    out = []
    for kind in kinds:
        out.append(f"{kind}:")
        rows = [[name, f"[{entry.origin}]", " — ".join(p for p in (entry.description, _detail(kind, entry)) if p)]
                for name, entry in sorted(getattr(registry, kind).items())]
        out += ["  " + line for line in fit(rows, width - 2, tablefmt="plain").splitlines()]
    if registry.broken:
        out.append("broken plugins:")
        rows = [[f"BROKEN {b.plugin}", f"[{b.origin}]", b.error] for b in registry.broken]
        out += ["  " + line for line in fit(rows, width - 2, tablefmt="plain").splitlines()]
    return "\n".join(out)


def hparam_rows(cls: Any) -> list[list[str]]:
    """(name, default, type, source) of each hyper-parameter of a method class."""
    return [[key, repr(value), type(value).__name__, cls.sources.get(key, "the plugin's choice (no source given)")]
            for key, value in cls.defaults.items()]


def render_method(entry: Entry, width: int | None = None) -> str:
    """One method: what it is, what it reads, its hyper-parameters and their sources."""
    cls, width = entry.obj, width or terminal_width()
    lines = [textwrap.fill(f"{entry.name} [{entry.origin}]: {entry.description}", width),
             textwrap.fill(f"needs: {', '.join(sorted(cls.needs))}; uses the teacher: "
                           f"{'yes' if cls.uses_teacher else 'no'}"
                           + ("" if cls.baseline is None else f"; report baseline rank {cls.baseline}"), width), ""]
    rows = hparam_rows(cls)
    if not rows:
        return "\n".join(lines + ["no hyper-parameters"])
    table = fit(rows, width, headers=["hyper-parameter", "default", "type", "default's source"], tablefmt="simple")
    return "\n".join(lines + [table, "", f"override with --set {entry.name}.KEY=VALUE"])
