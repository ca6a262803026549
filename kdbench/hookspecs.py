"""The plugin contract: every hook kdbench calls, in one place.

A plugin is a module (or object) with functions marked `@kdbench.hookimpl`, found
through the entry-point group ``kdbench`` or given with ``--plugin module``. The
built-in methods, pairs and datasets are plugins of exactly this kind.
"""
from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("kdbench")
hookimpl = pluggy.HookimplMarker("kdbench")


@hookspec
def kdbench_methods() -> list[type]:
    """Return `kdbench.Method` subclasses this plugin provides.

    Called once when the registry loads. Names must be unique across all plugins.
    """


@hookspec
def kdbench_pairs() -> list[type]:
    """Return `kdbench.Pair` subclasses (teacher/student pairs) this plugin provides."""


@hookspec
def kdbench_datasets() -> list[type]:
    """Return `kdbench.Dataset` subclasses this plugin provides."""


@hookspec
def kdbench_report_notes(deltas: Any) -> list[str] | None:
    """Return markdown lines (bullets, then a blank line) for the report's section
    "When does distillation pay?", which appears when the records hold more than one scenario.

    `deltas` gives the paired differences the report computed: `deltas.reference` is the
    baseline every verdict is measured against, `deltas.groups()` lists (pair, profile,
    scenarios), and `deltas.delta(pair, profile, scenario, method, baseline=None)` is a
    paired Δ (`.mean`, `.low`, `.high`, `.significant`, `.format()`) or None, taken at
    that table's main budget (the one most methods ran at, not its B/2 or time-matched
    cells). A paper's
    claim that kdbench checks belongs here, in the plugin of the method it concerns.
    """


@hookspec
def kdbench_report_sections(deltas: Any) -> list[str] | None:
    """Return a markdown section of your own (a `## heading`, then its lines) for the
    report, placed after its summary; None or [] when the records hold nothing for it.

    `deltas` is the view `kdbench_report_notes` gets, plus `deltas.methods(pair, profile,
    scenario)` (row name → hyper-parameters), `deltas.accuracy(pair, profile, scenario,
    method)` ((mean test accuracy, seeds, test examples) or None) and
    `deltas.teacher_accuracy(pair, profile)`. A paper's protocol, reproduced, lives here.
    """


@hookspec
def kdbench_record_written(record: dict[str, Any]) -> None:
    """Called after every record is written, with the record as a dict (for sinks).

    An exception here is reported as a warning and never loses the record.
    """
