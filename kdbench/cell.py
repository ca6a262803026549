"""One cell, one place: the steps that train and evaluate a student for one (pair, method, seed).

The runner's workers and the conformance kit (`kdbench.testing`) both run these
functions, so the kit checks exactly the path a real run takes. A cell's randomness is
seeded in three fixed places — `seed` for the student's initial weights, `seed + 1`
for the method's adapters, `seed + 2` for the training loop (its data order comes from
`seed` itself) — so every method on a pair starts from the same student and sees the
same batches: method differences are paired comparisons.
"""
from __future__ import annotations

import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .accel import Accel
from .api import Budget, Forward, Method, Outputs, Pair, Schedule, Splits, TensorData
from .data import limit
from .fidelity import agreement, kl_teacher_student
from .measure import count_params
from .plan import Cell
from .plugins import Registry
from .quantize import quantize_linear
from .record import Record
from .results import host_info, student_digest, utc_now
from .scenarios import Scenario
from .train import (
    NumericalFault,
    TrainResult,
    accuracy,
    predict,
    representation_check,
    train,
)
from .zoo import Teacher

#: Validation examples behind the representation check at phase boundaries (the first ones).
CHECK_EXAMPLES = 64
#: What a record keeps of a pre-trained student body's card.
STUDENT_CARD_KEYS = ("key", "sha256", "seconds", "steps", "reused")
#: Validation examples behind each budget-curve point (a pair may set `curve_eval_limit` in
#: its schedule's `extra`); the final `val_acc` uses the whole (profile-limited) split.
CURVE_EVAL_LIMIT = 2000

Place = Callable[[nn.Module], nn.Module]  # puts a module on the run's device (see Accel.model)


def load_splits(registry: Registry, pair: Pair, profile: str, data_dir: Path | None,
                device: torch.device | str) -> Splits:
    """The pair's dataset, cut to the profile's sizes, on `device`."""
    dataset = registry.dataset(pair.dataset).obj()
    splits = dataset.load(data_dir, **pair.dataset_options(profile))
    schedule = pair.schedule(profile)
    splits = limit(splits, schedule.train_limit, schedule.eval_limit)
    return Splits(splits.train.to(device), splits.val.to(device), splits.test.to(device),
                  splits.num_classes, splits.fingerprint)


def init_student(pair: Pair, teacher: nn.Module, num_classes: int, seed: int, place: Place) -> nn.Module:
    """The student at `seed`: the same initial weights for every method (paired comparisons)."""
    torch.manual_seed(seed)
    return place(pair.build_student(teacher, num_classes))


def student_adapters(student: nn.Module, method: Method, data: TensorData, schedule: Schedule, forward: Forward,
                     teacher: nn.Module | None, seed: int, place: Place) -> nn.Module | None:
    """The method's adapters, built at `seed + 1` from student and teacher outputs on the first batch."""
    needs = frozenset(method.needs) | {"logits"}
    sample = data.take(schedule.batch_size)
    torch.manual_seed(seed + 1)
    s_out = forward(student, sample.x, needs)
    with torch.no_grad():
        t_out = forward(teacher, sample.x, needs) if method.uses_teacher and teacher is not None else None
    adapters = method.adapters(s_out.detach(), t_out)
    return place(adapters) if adapters is not None else None


def train_student(student: nn.Module, method: Method, data: TensorData, budget: Budget, schedule: Schedule,
                  forward: Forward, *, seed: int, teacher: nn.Module | None, adapters: nn.Module | None,
                  teacher_cached: Tensor | Outputs | None = None, **loop: Any) -> TrainResult:
    """The one training loop at `seed + 2`, with the live teacher unless its outputs are cached.

    `loop` passes `on_step` and `evaluate` through to `kdbench.train.train`."""
    use_teacher = method.uses_teacher
    live = use_teacher and teacher_cached is None
    torch.manual_seed(seed + 2)
    return train(student, method, data, budget, schedule, forward, seed=seed,
                 teacher=teacher if live else None, adapters=adapters,
                 teacher_logits=teacher_cached if use_teacher else None, **loop)


@dataclass
class PreparedPair:
    """What every cell of a pair shares: the pair, its data, its teacher, caches."""

    pair: Pair
    splits: Splits
    teacher: Teacher
    train_outputs: dict[str, Tensor | Outputs | None] = field(default_factory=dict)  # teacher (and taps) → cache
    test_logits: dict[str, Tensor] = field(default_factory=dict)  # teacher sha256 → test logits
    variants: dict[float, Teacher] = field(default_factory=dict)  # steps fraction → weaker teacher


@dataclass
class Job:
    """A cell resolved once: its method instance, schedule, scenario, budget and teacher."""

    cell: Cell
    prepared: PreparedPair
    method: Method
    schedule: Schedule
    scenario: Scenario
    budget: Budget
    teacher: Teacher

    def identity(self, profile: str) -> dict[str, Any]:
        """The keys that name the cell's record (see `kdbench.results.IDENTITY_KEYS`)."""
        return {"pair": self.cell.pair, "method": self.cell.method, "seed": self.cell.seed, "profile": profile,
                "budget": self.budget.as_dict(), "hparams": dict(vars(self.method.hp)),
                "teacher_sha256": self.teacher.sha256, "scenario": self.cell.scenario,
                "student": student_digest(self.prepared.pair.student_recipe(profile))}


def run_cell(job: Job, record: Record, accel: Accel, *, teacher_cached: Tensor | Outputs | None = None,
             teacher_test_logits: Tensor | None = None, progress: bool = False) -> Record:
    """Train and evaluate one cell into `record` (a head with identity, provenance and costs).

    `teacher_cached` are the cached teacher logits (or outputs) over the whole train
    split (the scenario's subset is taken here). A failure is recorded, never raised: one broken
    cell must not stop the grid."""
    record.created, record.threads, record.host = utc_now(), torch.get_num_threads(), host_info(accel.device)
    started = time.perf_counter()
    bar = tqdm(desc=f"{job.cell.pair}/{job.cell.method}/seed{job.cell.seed}", total=job.budget.steps,
               leave=False, disable=not progress)
    try:
        _train_and_evaluate(job, record, accel, teacher_cached, teacher_test_logits, lambda s, l: bar.update(1))
        record.status = "ok"
    except NumericalFault as exc:
        record.fail(str(exc), failure={"step": exc.step, "term": exc.term})
    except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the grid
        record.fail(f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                    error_at=_plugin_frame(exc, job))
    finally:
        bar.close()
    record.wall_seconds = round(time.perf_counter() - started, 3)
    return record


def _plugin_frame(exc: BaseException, job: Job) -> str | None:
    """Where in the method's or pair's own file the failure happened (innermost frame)."""
    files = {inspect.getsourcefile(type(obj)) for obj in (job.method, job.prepared.pair)}
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno}: {(f.line or '').strip()}"


def _train_and_evaluate(job: Job, record: Record, accel: Accel, teacher_cached: Tensor | Outputs | None,
                        teacher_test_logits: Tensor | None, on_step: Callable[[int, float], None]) -> None:
    pair, splits, seed = job.prepared.pair, job.prepared.splits, job.cell.seed
    forward = accel.forward(pair.forward)
    student_data = job.scenario.apply(splits.train, splits.num_classes, seed)
    record.scenario_info = {**student_data.info, "val_examples": len(splits.val), "test_examples": len(splits.test)}
    if teacher_cached is not None and student_data.indices is not None:
        teacher_cached = (teacher_cached.rows(student_data.indices) if isinstance(teacher_cached, Outputs)
                          else teacher_cached[student_data.indices.to(teacher_cached.device)])
    student = init_student(pair, job.teacher.model, splits.num_classes, seed, accel.model)
    adapters = student_adapters(student, job.method, student_data.data, job.schedule, forward,
                                job.teacher.model, seed, accel.model)
    record.params = {**(record.params or {}), "adapters": count_params(adapters)}
    curve_val = splits.val.take(job.schedule.extra.get("curve_eval_limit", CURVE_EVAL_LIMIT))
    record.curve_eval_examples = len(curve_val)
    check = (representation_check(student, job.teacher.model, forward, splits.val.take(CHECK_EXAMPLES), pair.taps)
             if job.method.phases() else None)  # a collapse at a phase boundary shows in the record
    result = train_student(student, job.method, student_data.data, job.budget, job.schedule, forward, seed=seed,
                           teacher=job.teacher.model, adapters=adapters, teacher_cached=teacher_cached,
                           on_step=on_step, phase_check=check,
                           evaluate=lambda: accuracy(predict(student, forward, curve_val), curve_val.y))
    if teacher_test_logits is None:
        teacher_test_logits = predict(job.teacher.model, forward, splits.test)
    _evaluate(record, student, forward, pair, splits, teacher_test_logits)
    live = job.method.uses_teacher and teacher_cached is None
    record.train = {"steps": result.steps, "seconds": round(result.seconds, 4),
                    "teacher_seconds": round(result.teacher_seconds, 4),
                    "teacher": ("live" if live else "cached") if job.method.uses_teacher else "none",
                    "batch_size": job.schedule.batch_size,
                    "epochs": round(result.steps * job.schedule.batch_size / len(student_data.data), 3)}
    record.curve, record.terms = result.curve, result.terms
    record.phases, record.phase_checks = result.phases or None, result.phase_checks or None
    if pair.student_card is not None:
        record.student_init = {k: pair.student_card.get(k) for k in STUDENT_CARD_KEYS}
    record.losses = [round(v, 6) for v in result.losses]


def _evaluate(record: Record, student: nn.Module, forward: Forward, pair: Pair, splits: Splits,
              teacher_test_logits: Tensor) -> None:
    """Test and validation accuracy, fidelity to the teacher, and the int8 student's."""
    test_logits = predict(student, forward, splits.test)
    record.metrics.update({
        "test_acc": accuracy(test_logits, splits.test.y),
        "val_acc": accuracy(predict(student, forward, splits.val), splits.val.y),
        "agreement": agreement(test_logits, teacher_test_logits),
        "kl_teacher_student": kl_teacher_student(teacher_test_logits, test_logits),
    })
    quantized = dict(record.quantized or {"skipped": "not measured"})
    if "skipped" not in quantized:
        logits = predict(quantize_linear(student), pair.forward, splits.test.to("cpu"))
        quantized.update(test_acc=accuracy(logits, splits.test.y.cpu()),
                         agreement=agreement(logits, teacher_test_logits.cpu()))
    record.quantized = quantized
