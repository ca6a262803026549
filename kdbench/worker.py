"""The work an executor hands out: prepare each pair once, resolve each cell once, run it.

A `CellWorker` lives in the driver, which uses it to prepare pairs (data, teachers,
cached logits) and to build each cell's record head; forked workers inherit it with
everything prepared. `portable()` gives a copy that carries only the run's settings,
for a process that shares no memory with the driver (a Ray task): it carries the
prepared teachers and pre-trained student artefacts, and loads the registry and data itself.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .accel import Accel, resolve_device
from .api import Outputs, Pair, Splits
from .cell import Job, PreparedPair, load_splits, run_cell
from .executors import Dispatch, torch_threads
from .measure import LATENCY_SECONDS, pair_costs
from .plan import Cell, RunConfig
from .plugins import Registry, load_registry
from .record import Record
from .results import host_info
from .scenarios import get as get_scenario
from .student_zoo import artefact_files, install_artefact
from .teacher_cache import cacheable, logits_only, teacher_logits, teacher_outputs
from .train import predict
from .zoo import CarriedTeacher, Teacher, Zoo


@dataclass(frozen=True)
class Task:
    """A cell and its record head (identity, provenance, the pair's costs)."""

    cell: Cell
    record: Record


class CellWorker:
    """Prepared pairs and resolved cells of one run; calling it runs a task."""

    def __init__(self, config: RunConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.accel = Accel.choose(resolve_device(config.device), config.precision)
        self.zoo = Zoo(config.zoo_root)
        self.progress = config.progress
        self._registry = registry
        self._pairs: dict[str, PreparedPair] = {}
        self._jobs: dict[Cell, Job] = {}
        self._carried: dict[str, tuple[CarriedTeacher, dict[float, CarriedTeacher]]] = {}  # teachers prepared elsewhere
        self._student_files: dict[str, dict[str, bytes]] = {}  # pre-trained student artefacts, likewise

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry(self.config.plugins)
        return self._registry

    # -- pairs ---------------------------------------------------------------------------------
    def data(self, pair: Pair) -> Splits:
        return load_splits(self.registry, pair, self.config.profile, self.config.data_dir, self.accel.device)

    def teacher(self, pair: Pair, splits: Splits, steps_fraction: float = 1.0) -> Teacher:
        """The pair's teacher from the zoo, trained (with a progress bar) when missing."""
        total = round(pair.schedule(self.config.profile).teacher_steps * steps_fraction)
        bar = tqdm(total=total, desc=f"teacher {pair.name}", leave=False, disable=not self.progress)
        try:
            return self.zoo.get(pair, self.config.profile, splits, self.accel, on_step=lambda s, l: bar.update(1),
                                steps_fraction=steps_fraction)
        finally:
            bar.close()

    def pair(self, name: str) -> PreparedPair:
        """Data and teacher of a pair, loaded (and the teacher trained) once."""
        if name not in self._pairs:
            while self._student_files:  # carried from the driver: in this node's cache before any student is built
                install_artefact(*self._student_files.popitem())
            pair = self.registry.pair(name).obj()
            pair.progress = self.progress
            splits = self.data(pair)
            if name in self._carried:
                teacher, variants = self._carried[name]
                rebuild = lambda t: t.rebuild(pair, splits.num_classes, self.accel)  # noqa: E731
                self._pairs[name] = PreparedPair(pair, splits, rebuild(teacher),
                                                 variants={f: rebuild(t) for f, t in variants.items()})
            else:
                self._pairs[name] = PreparedPair(pair, splits, self.teacher(pair, splits))
        return self._pairs[name]

    def costs(self, prepared: PreparedPair, threads: int | None = None) -> dict[str, Any]:
        """Params, FLOPs, latency and int8 of teacher and student: the same for every method;
        latencies at `threads` intra-op threads (None: this process's count)."""
        pair, splits, teacher = prepared.pair, prepared.splits, prepared.teacher
        torch.manual_seed(0)
        student = self.accel.model(pair.build_student(teacher.model, splits.num_classes))
        big = pair.schedule(self.config.profile).extra.get("latency_batch", 256)
        x1, xn = (_to(pair.example_inputs(splits, n), self.accel.device) for n in (1, big))
        device = self.accel.device.type
        with torch_threads(threads):
            return pair_costs(teacher.model, student, x1, xn, LATENCY_SECONDS[self.config.profile],
                              call=self.accel.call, int8_skipped=None if device == "cpu" else
                              f"dynamic int8 quantization runs on CPU only; device is {device}")

    # -- cells ---------------------------------------------------------------------------------
    def job(self, cell: Cell) -> Job:
        """`cell` resolved: method instance, schedule, scenario, budget, teacher (once per cell)."""
        if cell not in self._jobs:
            prepared = self.pair(cell.pair)
            schedule = prepared.pair.schedule(self.config.profile)
            scenario = get_scenario(cell.scenario)
            self._jobs[cell] = Job(cell, prepared, self.registry.method(cell.method).obj(**dict(cell.hparams)),
                                   schedule, scenario, self.config.budget(schedule.steps, cell.pair),
                                   self._scenario_teacher(prepared, scenario.teacher_steps_fraction))
        return self._jobs[cell]

    def _scenario_teacher(self, prepared: PreparedPair, fraction: float) -> Teacher:
        """The teacher a scenario distils: the pair's, or a weaker zoo variant (once per pair)."""
        if fraction == 1.0:
            return prepared.teacher
        if fraction not in prepared.variants:
            prepared.variants[fraction] = self.teacher(prepared.pair, prepared.splits, fraction)
        return prepared.variants[fraction]

    def head(self, job: Job, costs: dict[str, Any]) -> Record:
        """A cell's record before it runs: identity, provenance (with the planned thread
        count, which the cell replaces by what it ran with), the pair's costs."""
        threads = Dispatch(self.config.jobs, self.config.threads).cell_threads()
        record = Record(**job.identity(self.config.profile), command=self.config.command,
                        dataset=job.prepared.pair.dataset, device=str(self.accel.device), **self.accel.describe(),
                        threads=threads, host=host_info(self.accel.device, threads),
                        teacher_key=job.teacher.card.get("key"), teacher_source=job.teacher.card.get("source", "trained"),
                        metrics={"teacher_test_acc": job.teacher.card["test_acc"]})
        if self.config.match_seconds:
            record.matched = {"method": self.config.match_seconds,
                              "seconds": self.config.pair_seconds[job.cell.pair]}
        record.set_costs(costs)
        return record

    def train_outputs(self, job: Job) -> torch.Tensor | Outputs | None:
        """The teacher's train-split outputs when the job's method may use them: its logits
        (a tensor) for logits-only methods, else the taps it reads (`Outputs`) while they fit
        the cache; None: the teacher runs live. Once per pair, teacher and taps."""
        if not (self.config.teacher_cache and cacheable(job.method, job.prepared.pair)):
            return None
        prepared, teacher = job.prepared, job.teacher
        taps = frozenset(job.method.needs) | {"logits"}
        key = teacher.sha256 if logits_only(job.method) else f"{teacher.sha256}:{','.join(sorted(taps))}"
        if key not in prepared.train_outputs:
            if logits_only(job.method):
                prepared.train_outputs[key] = teacher_logits(self.zoo, teacher, prepared.pair, prepared.splits,
                                                            self.config.profile, self.accel)
            else:
                prepared.train_outputs[key] = teacher_outputs(teacher, prepared.pair, prepared.splits, taps,
                                                             job.schedule.batch_size, self.accel)
        return prepared.train_outputs[key]

    def test_logits(self, job: Job) -> torch.Tensor:
        """The teacher's test logits, for fidelity metrics (once per pair and teacher)."""
        cache, teacher = job.prepared.test_logits, job.teacher
        if teacher.sha256 not in cache:
            forward = self.accel.forward(job.prepared.pair.forward)
            cache[teacher.sha256] = predict(teacher.model, forward, job.prepared.splits.test)
        return cache[teacher.sha256]

    def warm(self, job: Job) -> None:
        """Compute the job's cached teacher outputs now (before workers fork, so they inherit them)."""
        self.train_outputs(job)
        self.test_logits(job)

    # -- the executor's side -------------------------------------------------------------------
    def __call__(self, task: Task) -> dict[str, Any]:
        job = self.job(task.cell)
        record = run_cell(job, task.record.copy(), self.accel, teacher_cached=self.train_outputs(job),
                          teacher_test_logits=self.test_logits(job), progress=self.progress)
        return record.as_dict()

    def failed(self, task: Task, error: str) -> dict[str, Any]:
        return task.record.copy().fail(error).as_dict()

    def portable(self) -> "CellWorker":
        """The settings and the prepared teachers, without data or caches: what travels to
        a process that shares no memory (or filesystem) with this one."""
        config = dataclasses.replace(self.config, progress=False, zoo_root=self.zoo.root.parent)
        worker = CellWorker(config)
        worker._carried = {name: (CarriedTeacher.of(p.teacher), {f: CarriedTeacher.of(t) for f, t in p.variants.items()})
                           for name, p in self._pairs.items()}
        worker._student_files = {card["key"]: artefact_files(card["key"])
                                 for p in self._pairs.values() if (card := p.pair.student_card)}
        return worker


def _to(x: Any, device: torch.device) -> Any:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
