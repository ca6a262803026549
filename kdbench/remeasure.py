"""Measure a pair's costs again and write them into the records that already exist.

A pair's costs (params, FLOPs, latency, throughput, sizes) depend on the architectures,
not on the trained weights, so every record of a pair carries the same measurement,
taken once per run before any cell starts. When that measurement was disturbed (another
job kept the cores busy), the records' accuracies stay right and only their costs are
wrong; re-running the cells would retrain them to fix a number that training does not
change. `remeasure` measures the pair once more, here and now, and rewrites only the cost
fields; each record keeps the cell's own measurement under `costs_remeasured`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .errors import UsageError, suggest
from .executors import free_cores
from .plan import RunConfig
from .plugins import Registry
from .record import Record
from .results import load_records, student_digest, utc_now, write_record
from .worker import CellWorker

#: The record fields a cost measurement sets (`Record.set_costs`); `quantized` keeps the
#: int8 student's accuracy and agreement, which the cell measured, and takes the rest.
COST_FIELDS = ("flops", "latency_ms", "latency_batch", "throughput", "speedup_bs1", "speedup_bsN", "size_bytes")


@dataclass
class Remeasured:
    """One (profile, pair): the new speedups, the records rewritten and those left alone."""

    profile: str
    pair: str
    threads: int
    speedup_bs1: float
    speedup_bsN: float
    before: list[tuple[float, float]] = field(default_factory=list)  # each rewritten record's old speedups
    left: list[str] = field(default_factory=list)  # why a record of the pair was not rewritten


def _threads(records: Sequence[dict[str, Any]], threads: int | None) -> int:
    """--threads, else the thread count the records' cells ran with (the runner measures
    costs at the cells' count), else this process's."""
    if threads is not None:
        return threads
    counts = sorted({int(r["threads"]) for r in records if isinstance(r.get("threads"), int)})
    return counts[0] if counts else torch.get_num_threads()


def select(records: Sequence[dict[str, Any]], pairs: Sequence[str] | None) -> dict[tuple[str, str], list[dict]]:
    """The `ok` records of `pairs` (all pairs when None), by (profile, pair)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and (pairs is None or r["pair"] in pairs):
            groups[(r["profile"], r["pair"])].append(r)
    for name in pairs or ():
        if not any(pair == name for _, pair in groups):
            found = sorted({r["pair"] for r in records})
            raise UsageError(f"no ok records of pair {name!r} to re-measure" + suggest(name, found, "records have: "))
    return dict(groups)


def remeasure(registry: Registry, out: Path, pairs: Sequence[str] | None = None, *, base: RunConfig | None = None,
              notify: Callable[[str], None] = lambda line: None) -> list[Remeasured]:
    """Re-measure the costs of every (profile, pair) with `ok` records under `out` and
    write them into the records whose student and models are the pair's current ones.
    `base` gives the device, data folder, plugins and threads (default: the cells')."""
    if not Path(out).is_dir():
        raise UsageError(f"{out} is not a folder of records; give the --out of an earlier `kdbench run`")
    groups = select(load_records([out]), pairs)
    if not groups:
        raise UsageError(f"{out} holds no ok records to re-measure; run the grid first (kdbench run --out {out})")
    base = base or RunConfig()
    done = []
    for (profile, name), records in sorted(groups.items()):
        n = _threads(records, base.threads)
        free, busy = free_cores()
        if busy:
            notify(f"{busy} of {free + busy} cores are busy with other work: {name}'s latencies are measured on "
                   "a loaded machine")
        config = RunConfig(**{**vars(base), "profile": profile, "out": Path(out)})
        worker = CellWorker(config, registry)
        prepared = worker.pair(name)
        costs = worker.costs(prepared, n)
        digest = student_digest(prepared.pair.student_recipe(profile))
        result = Remeasured(profile, name, n, costs["speedup_bs1"], costs["speedup_bsN"])
        fields = cost_fields(costs)  # the same for every record of the pair
        for record in records:
            why = _mismatch(record, costs, digest, str(worker.accel.device))
            if why:
                result.left.append(f"{record['method']} seed {record['seed']}: {why}")
                continue
            result.before.append((record["speedup_bs1"], record["speedup_bsN"]))
            write_record(Path(out), rewritten(record, fields, n, busy, config.command))
        done.append(result)
    return done


def _mismatch(record: dict[str, Any], costs: dict[str, Any], digest: str, device: str) -> str | None:
    """Why this measurement does not describe `record`'s models, or None when it does."""
    if record.get("student") != digest:
        return "its student is not the pair's current one (another architecture or recipe)"
    if record.get("device") != device:
        return f"it ran on {record.get('device')}, this measurement on {device}"
    params = record.get("params") or {}
    if (params.get("teacher"), params.get("student")) != (costs["params"]["teacher"], costs["params"]["student"]):
        return "its teacher or student has another parameter count than the pair's current models"
    return None


def cost_fields(costs: dict[str, Any]) -> dict[str, Any]:
    """The record fields a measurement sets, as `Record.set_costs` sets them (`params` aside:
    a cell adds its adapters there, and the check in `_mismatch` keeps the models the same)."""
    head = Record(pair="", method="", seed=0, profile="", budget={}, hparams={}, teacher_sha256="", scenario="",
                  git_sha=None, versions={})
    head.set_costs(costs)
    return {key: getattr(head, key) for key in (*COST_FIELDS, "quantized")}


def rewritten(record: dict[str, Any], fields: dict[str, Any], threads: int, busy: int, command: str) -> dict[str, Any]:
    """`record` with the new cost `fields`. `costs_remeasured.replaced` keeps what the cell
    itself measured: a later remeasure keeps it too, so the original numbers are never lost."""
    cell_quantized = {k: v for k, v in (record.get("quantized") or {}).items() if k in ("test_acc", "agreement")}
    return {
        **record, **fields, "quantized": {**fields["quantized"], **cell_quantized},
        "costs_remeasured": {
            "at": utc_now(), "threads": threads, "busy_cores": busy, "command": command,
            "replaced": (record.get("costs_remeasured") or {}).get("replaced")
            or {k: record.get(k) for k in ("latency_ms", "speedup_bs1", "speedup_bsN")},
        },
    }
