"""Run a planned grid: prepare every pair, hand the cells to an executor, write the records.

Cells whose complete record already exists under `--out` are skipped, so re-running a
command resumes it. What a cell does lives in `kdbench.cell`, what a worker holds in
`kdbench.worker`, where cells run in `kdbench.executors`; this module orchestrates.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from .errors import UsageError
from .executors import EXECUTORS, Dispatch, free_cores, torch_threads
from .fsutil import clean_stale_tmp, writable_dir_problem
from .plan import Cell, RunConfig, by_pair, resumed_match, timing_cells
from .plugins import Registry
from .results import read_record, record_path, write_record
from .worker import CellWorker, Task
from .zoo import Zoo


@dataclass
class Summary:
    written: list[dict[str, Any]] = field(default_factory=list)
    reused: list[dict[str, Any]] = field(default_factory=list)
    not_run: int = 0  # cells left when --fail-fast stopped the grid

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.reused + self.written

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


class Runner:
    """Runs a grid: each pair prepared once (data, teacher, costs), then every cell."""

    def __init__(self, registry: Registry, config: RunConfig, notify: Callable[[str], None] | None = None) -> None:
        self.registry = registry
        self.config = config
        self.worker = CellWorker(config, registry)
        self.notify = notify or (lambda line: None)  # one-line messages for the user (the CLI prints them)

    @property
    def zoo(self) -> Zoo:
        return self.worker.zoo

    def check(self, cells: Sequence[Cell] = ()) -> None:
        """What a run checks before it writes anything: --out and the zoo writable
        (--device and --precision were checked when the worker was built); with
        --match-seconds, the seconds an earlier run of the same grid gave each pair."""
        if self.config.match_seconds:
            for pair in by_pair(cells):
                seconds = resumed_match(self.config, pair)
                if seconds is not None:
                    self.config.pair_seconds[pair] = seconds
        problem = writable_dir_problem(Path(self.config.out))
        if problem:
            raise UsageError(f"--out {self.config.out} is not usable: {problem}")
        self.zoo.check_writable()

    def prepare(self, cells: Sequence[Cell] = ()) -> None:
        """The checks, then remove the temporary files that a killed run left in --out and the zoo."""
        self.check(cells)
        for root in (Path(self.config.out), self.zoo.root):
            clean_stale_tmp(root)

    def run(self, cells: Sequence[Cell]) -> Summary:
        """Prepare every pair (data, teacher, costs, caches), then hand all cells to the
        executor at once: workers never wait for a pair boundary, and every latency is
        measured before any worker starts, on an otherwise idle machine."""
        self.prepare(cells)
        self.match(cells)
        summary = Summary()
        grid = tqdm(total=len(cells), desc="grid", disable=not self.config.progress)
        grid.refresh()  # shown from the first second, while pairs are prepared
        try:
            dispatch, busy_note = self._dispatch()
            tasks = [task for name, pair_cells in by_pair(cells).items()
                     for task in self.pair_tasks(name, pair_cells, summary, grid, dispatch.cell_threads())]
            grid.set_description_str("grid")
            if summary.reused:
                self.notify(f"{len(summary.reused)} of {len(cells)} cells already have a record in "
                            f"{self.config.out}; {len(tasks)} new cells to run")
            if tasks:
                if busy_note:
                    self.notify(busy_note)
                self._collect(EXECUTORS[self.config.executor](self.worker, tasks, dispatch), summary, grid,
                              len(cells))
        finally:
            grid.close()
        return summary

    def match(self, cells: Sequence[Cell]) -> None:
        """With --match-seconds M: time M's step-budget cells first, in this run (same jobs,
        threads and machine load as the cells that follow), and give each pair their mean
        training seconds. Recorded seconds from another day measure another machine state.
        Pairs that an earlier run of the grid already matched keep their seconds (resume)."""
        method = self.config.match_seconds
        todo = [c for c in cells if c.pair not in self.config.pair_seconds]
        if not method or not todo:
            return
        timing = timing_cells(self.config, todo)
        self.notify(f"--match-seconds {method}: timing its step-budget cells first ({len(timing)} cells), "
                    "on this machine as it is now")
        config = dataclasses.replace(self.config, budget_mode="steps", match_seconds=None, pair_seconds={},
                                     force=True)
        written = Runner(self.registry, config, self.notify).run(timing).written
        for pair in by_pair(timing):
            found = [float(r["train"]["seconds"]) for r in written if r["pair"] == pair and r["status"] == "ok"]
            if not found:
                raise UsageError(f"--match-seconds {method}: its step-budget cells of {pair!r} failed, so there "
                                 f"are no seconds to match; see the records in {self.config.out}")
            self.config.pair_seconds[pair] = round(sum(found) / len(found), 1)

    def _dispatch(self) -> tuple[Dispatch, str | None]:
        """How the cells run, and a line for the user when other work keeps cores busy.
        Without --threads, cells share the cores that other work leaves free as the run
        starts (`executors.free_cores`); on a Ray cluster (--ray-address) this machine's
        load says nothing of the nodes'."""
        config = self.config
        if config.threads is not None or config.ray_address:
            return Dispatch(config.jobs, config.threads, config.ray_address), None
        free, busy = free_cores()
        dispatch = Dispatch(config.jobs, None, None, cores=free)
        note = (f"{busy} of {free + busy} cores are busy with other work: cells run on {dispatch.cell_threads()} "
                "thread(s) each, so a run's numbers can differ from an idle machine's; give --threads to fix "
                "the count") if busy else None
        return dispatch, note

    def _collect(self, records: Iterator[dict[str, Any]], summary: Summary, grid: Any, total: int) -> None:
        """Write each record as it comes back; with --fail-fast, stop at the first failure."""
        for record in records:
            write_record(self.config.out, record)
            self.registry.record_written(record)
            summary.written.append(record)
            grid.update(1)
            if record["status"] != "ok" and self.config.fail_fast:
                records.close()  # type: ignore[attr-defined]
                summary.not_run = total - len(summary.records)
                return

    def pair_tasks(self, name: str, cells: Sequence[Cell], summary: Summary, grid: Any,
                   threads: int | None = None) -> list[Task]:
        """The cells of one pair still to run, each with its record head; cells with a
        complete record go to `summary.reused`. Loads (or trains) what the cells share —
        data, teachers, cached logits — before any worker is forked. Costs and cached teacher
        outputs are computed at the cells' `threads`: more threads than the free cores make
        every latency a wait, and a cached output then equals the one a cell would compute live."""
        todo = []
        grid.set_description_str(f"preparing {name}: data and teachers")
        for cell in cells:
            job = self.worker.job(cell)
            existing = _complete(record_path(self.config.out, job.identity(self.config.profile)))
            if existing is not None and not self.config.force:
                summary.reused.append(existing)
                grid.update(1)
            else:
                todo.append(job)
        if not todo:
            return []
        grid.set_description_str(f"preparing {name}: measuring costs")
        costs = self.worker.costs(self.worker.pair(name), threads)
        grid.set_description_str(f"preparing {name}: teacher outputs")
        with torch_threads(threads):
            for job in todo:  # before any fork, so workers inherit the caches
                self.worker.warm(job)
        return [Task(job.cell, self.worker.head(job, costs)) for job in todo]


def _complete(path: Path) -> dict[str, Any] | None:
    """The `ok` record at `path`, or None: the cell must run (again)."""
    if not path.is_file():
        return None
    try:
        record = read_record(path)
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring {path}: {exc}; the cell runs again")
        return None
    return record if record.get("status") == "ok" else None
