"""Conformance checks a plugin author runs from their own pytest.

    from kdbench.testing import check_method, check_pair

    def test_my_method_conforms():
        check_method(MyMethod, pair="mlp-hinton")

A check runs the plugin the way `kdbench run` does — the pair's own forward, the one
training loop — on a small batch for a few steps, then one cell end to end through the
runner, and raises `ConformanceError` (an AssertionError) naming the rule broken.

Method rules, in the order they are checked:

| rule | what it asks |
| --- | --- |
| `declaration` | a `kdbench.Method` subclass with a `name`, a `loss`, known taps in `needs`, a dict of `defaults` |
| `compatible` | the pair exposes every tap in `needs` |
| `needs-satisfied` | the pair's forward really fills each declared tap, for student and teacher |
| `adapters` | `adapters()` returns None or a new `nn.Module` (no student or teacher weights in it) |
| `undeclared-taps` | `adapters()` and `loss()` read no tap that `needs` does not declare |
| `finite-scalar-terms` | `loss()` returns a non-empty dict of named, finite, 0-dim floating tensors |
| `student-gradients` | the loss reaches the student at every progress point, with finite gradients |
| `adapter-gradients` | every trainable adapter parameter receives a gradient at some progress point |
| `teacher-no-gradients` | no gradient reaches the teacher: not its weights, not the outputs it produced |
| `teacher-unchanged` | the teacher's weights, buffers, eval mode and outputs are the same after training |
| `deterministic` | two runs with the same seed give identical losses and student weights |
| `end-to-end` | one cell through the runner writes a record with status ok |

Pair rules (`check_pair`): `declaration`, `schedule` (the profile's `Schedule` is sane),
`teacher-recipe` (a stable, non-empty dict), `data` (non-empty splits, labels in range),
`deterministic` (same seed → same teacher and student weights), `separate-weights` (the
student shares no tensor with the teacher), `taps` (every declared tap has the documented
shape for both models), `teacher-unchanged` (a forward pass changes nothing, e.g. no
batch-norm updates), then the method rules above for a probe loss that reads every tap.

The probes use an untrained teacher (built with the teacher seed), so they take
seconds; `end-to-end` uses the pair's real teacher for the profile from the teacher zoo
(`$KDBENCH_HOME`), training it once if it is not cached. Progress points probe the
phases of phased methods (`self.progress` from 0 to 1).
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pluggy
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import hookspecs
from .accel import Accel
from .api import (
    TAPS,
    Budget,
    Dataset,
    Method,
    Outputs,
    Pair,
    Schedule,
    Splits,
    TensorData,
)
from .cell import init_student, load_splits, student_adapters, train_student
from .plan import Cell, RunConfig
from .plugins import GROUP, Entry, Registry, load_registry, problem
from .runner import Runner
from .train import NumericalFault, set_teacher_frozen
from .zoo import TEACHER_SEED

#: Progress points at which `loss()` is probed (phased methods change terms with progress).
PROGRESS = (0.0, 0.25, 0.5, 0.75, 0.99)
UNDER_TEST = "kdbench.testing"


class ConformanceError(AssertionError):
    """A plugin broke a conformance rule; `rule` says which, the message says how."""

    def __init__(self, rule: str, subject: str, detail: str) -> None:
        self.rule, self.subject, self.detail = rule, subject, detail
        super().__init__(f"{subject} breaks conformance rule {rule!r}: {detail}")


@dataclass
class Report:
    """What a passing check verified (rule names in order) and anything worth a look."""

    subject: str
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None  # the end-to-end record

    def __str__(self) -> str:
        lines = [f"{self.subject}: {len(self.passed)} rules passed ({', '.join(self.passed)})"]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


class _Check:
    """Collects passed rules; turns an unexpected exception inside a rule into its failure."""

    def __init__(self, subject: str) -> None:
        self.report = Report(subject)

    def fail(self, rule: str, detail: str) -> None:
        raise ConformanceError(rule, self.report.subject, detail)

    @contextmanager
    def rule(self, name: str) -> Iterator[None]:
        try:
            yield
        except ConformanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any crash inside a rule is that rule failing
            raise ConformanceError(name, self.report.subject, f"raised {type(exc).__name__}: {exc}") from exc
        if name not in self.report.passed:
            self.report.passed.append(name)


# -- watching which taps a method reads ---------------------------------------------------------
class _Watched(Outputs):
    """Outputs that note in `_reads` the name of every tap read from them."""

    def __getattribute__(self, name: str) -> Any:
        if name in TAPS:
            object.__getattribute__(self, "_reads").add(name)
        return object.__getattribute__(self, name)

    def detach(self) -> "Outputs":
        return _watch(_fields(self).detach(), object.__getattribute__(self, "_reads"))


def _fields(out: Outputs) -> Outputs:
    """A plain copy of `out` (reading through a watcher without counting it)."""
    return Outputs(**{f.name: object.__getattribute__(out, f.name) for f in dataclasses.fields(Outputs)})


def _watch(out: Outputs | None, reads: set[str]) -> Outputs | None:
    if out is None:
        return None
    watched = _Watched(**{f.name: object.__getattribute__(out, f.name) for f in dataclasses.fields(Outputs)})
    object.__setattr__(watched, "_reads", reads)
    return watched


def _clone(out: Outputs | None) -> Outputs | None:
    """A deep copy of `out`'s tensors, so each probe gets teacher outputs of its own."""
    if out is None:
        return None

    def _c(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v.clone()
        return [t.clone() for t in v] if isinstance(v, (list, tuple)) else v

    return Outputs(**{f.name: _c(object.__getattribute__(out, f.name)) for f in dataclasses.fields(Outputs)})


def _tensors(out: Outputs | None) -> dict[str, Tensor]:
    """Every tensor in `out`, by a readable path such as `features[2]`."""
    found: dict[str, Tensor] = {}
    if out is None:
        return found
    for f in dataclasses.fields(Outputs):
        value = object.__getattribute__(out, f.name)
        if isinstance(value, Tensor):
            found[f.name] = value
        elif isinstance(value, (list, tuple)):
            found.update({f"{f.name}[{i}]": t for i, t in enumerate(value) if isinstance(t, Tensor)})
    return found


# -- the small world a check runs in -------------------------------------------------------------
@dataclass
class _Bench:
    pair: Pair
    schedule: Schedule  # the profile's schedule, cut to the check's batch size
    splits: Splits
    data: TensorData  # the few training examples the probe steps use
    accel: Accel  # the device and precision a real run on that device would use

    def teacher(self) -> nn.Module:
        torch.manual_seed(TEACHER_SEED)
        model = self.accel.model(self.pair.build_teacher(self.splits.num_classes))
        set_teacher_frozen(model)
        return model

    def student(self, teacher: nn.Module, seed: int) -> nn.Module:
        return init_student(self.pair, teacher, self.splits.num_classes, seed, self.accel.model)

    @property
    def forward(self) -> Any:
        return self.accel.forward(self.pair.forward)


def _resolve(kind: str, obj: Any, registry: Registry) -> type:
    if isinstance(obj, str):
        return getattr(registry, kind)(obj).obj
    return obj


def _bench(pair: Pair, registry: Registry, profile: str, steps: int, batch_size: int,
           device: torch.device, data_dir: Path | None) -> _Bench:
    schedule = pair.schedule(profile)
    splits = load_splits(registry, pair, profile, data_dir, device)
    bs = max(2, min(batch_size, schedule.batch_size, len(splits.train)))
    small = dataclasses.replace(schedule, batch_size=bs)
    return _Bench(pair, small, splits, splits.train.take(bs * max(steps, 1)), Accel.choose(device))


def _state(module: nn.Module | None) -> dict[str, Tensor]:
    return {} if module is None else {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> list[str]:
    if before.keys() != after.keys():
        return sorted(set(before) ^ set(after))
    return [k for k in before if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])]


def _named_params(module: nn.Module | None) -> list[tuple[str, nn.Parameter]]:
    return [] if module is None else list(module.named_parameters())


def _kind(cls: Any) -> str:
    for kind, base in (("method", Method), ("pair", Pair), ("dataset", Dataset)):
        if isinstance(cls, type) and issubclass(cls, base):
            return kind
    raise TypeError(f"{cls!r} is not a kdbench Method, Pair or Dataset subclass")


def _private_registry(base: Registry, classes: Sequence[type]) -> Registry:
    """The installed methods, pairs and datasets plus the classes under test; no sinks."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm, methods=dict(base.methods), pairs=dict(base.pairs), datasets=dict(base.datasets),
                   conflicts=dict(base.conflicts))
    for cls in classes:
        kind = _kind(cls)
        if problem(kind, cls) is None:
            getattr(reg, kind + "s")[cls.name] = Entry(kind, cls.name, cls, UNDER_TEST, "under test")
            reg.conflicts.pop((kind, cls.name), None)
    return reg


def _run_cell(check: _Check, registry: Registry, pair: str, method: str, seed: int,
              hparams: Mapping[str, Any], profile: str, device: torch.device, data_dir: Path | None,
              out: Path | None) -> None:
    with check.rule("end-to-end"), tempfile.TemporaryDirectory(prefix="kdbench-conformance-") as tmp:
        config = RunConfig(profile=profile, out=Path(out or tmp), device=str(device), data_dir=data_dir,
                           force=True, progress=False, command="kdbench.testing")
        cell = Cell(pair, method, seed, tuple(sorted(hparams.items())))
        summary = Runner(registry, config).run([cell])
        if len(summary.records) != 1:
            check.fail("end-to-end", f"expected one record, the runner returned {len(summary.records)}")
        record = summary.records[0]
        if record.get("status") != "ok":
            tail = (record.get("traceback") or "").strip().splitlines()[-3:]
            check.fail("end-to-end", f"the {profile} cell {pair}/{method}/seed{seed} failed: "
                                     f"{record.get('error')}" + ("\n" + "\n".join(tail) if tail else ""))
        acc = record.get("metrics", {}).get("test_acc")
        if not (isinstance(acc, float) and math.isfinite(acc)):
            check.fail("end-to-end", f"the record's metrics.test_acc is {acc!r}, not a finite number")
        check.report.record = record


# -- methods -------------------------------------------------------------------------------------
def check_method(
    method: type[Method] | str,
    pair: type[Pair] | str,
    *,
    hparams: Mapping[str, Any] | None = None,
    profile: str = "smoke",
    seed: int = 0,
    steps: int = 2,
    batch_size: int = 16,
    progress: Sequence[float] = PROGRESS,
    end_to_end: bool = True,
    extra: Sequence[type] = (),
    registry: Registry | None = None,
    device: str = "cpu",
    data_dir: Path | None = None,
    out: Path | None = None,
) -> Report:
    """Check a method against every rule (see the module docstring) on `pair`.

    `method` and `pair` are classes or registered names; a class need not be installed.
    `hparams` are `--set`-style overrides; `extra` are other classes of your plugin the
    check needs (a new pair's dataset, say); `registry` defaults to the installed plugins.
    Returns a `Report`; raises `ConformanceError`.
    """
    base = registry or load_registry()
    cls = _resolve("method", method, base)
    check = _Check(f"method {getattr(cls, 'name', None) or cls!r}")
    hparams = dict(hparams or {})
    with check.rule("declaration"):
        why = problem("method", cls)
        if why:
            check.fail("declaration", why)
        cls(**hparams)
    pair_cls = _resolve("pair", pair, base)
    with check.rule("declaration"):
        why = problem("pair", pair_cls)
        if why:
            check.fail("declaration", f"the pair is not usable: {why}")
    check.report.subject = check.report.subject + f" on pair {pair_cls.name!r}"
    with check.rule("compatible"):
        missing = set(cls.needs) - set(pair_cls.taps) - {"logits"}
        if missing:
            check.fail("compatible", f"needs taps {sorted(missing)} that pair {pair_cls.name!r} does not expose "
                                     f"(it has {sorted(pair_cls.taps)}); choose a pair that exposes them")

    dev = torch.device(device)
    private = _private_registry(base, [*extra, pair_cls, cls])
    bench = _bench(pair_cls(), private, profile, steps, batch_size, dev, data_dir)
    teacher = bench.teacher()
    _probe_method(check, cls, hparams, bench, teacher, seed, progress)
    _train_twice(check, lambda: cls(**hparams), bench, teacher, seed, steps)
    if end_to_end:
        _run_cell(check, private, pair_cls.name, cls.name, seed, hparams, profile, dev, data_dir, out)
    return check.report


def _probe_method(check: _Check, cls: type[Method], hparams: Mapping[str, Any], bench: _Bench,
                  teacher: nn.Module, seed: int, progress: Sequence[float]) -> None:
    """Call adapters() and loss() by hand at each progress point and inspect the gradients."""
    probe = _Probe(check, cls(**hparams), bench, teacher, bench.student(teacher, seed))
    probe.forward()
    probe.build_adapters(seed)
    teacher_before = _state(teacher)
    for point in progress:
        probe.at(float(point))
    probe.finish(progress)
    with check.rule("teacher-unchanged"):
        changed = _changed(teacher_before, _state(teacher))
        if changed:
            check.fail("teacher-unchanged", f"the teacher's {changed[:3]} changed while probing loss()")


@dataclass
class _Probe:
    """One method probed by hand on one batch: which taps it reads, where its gradients go."""

    check: _Check
    method: Method
    bench: _Bench
    teacher: nn.Module
    student: nn.Module
    s_reads: set[str] = field(default_factory=set)
    t_reads: set[str] = field(default_factory=set)
    adapters: nn.Module | None = None
    reached: set[str] = field(default_factory=set)  # adapter parameters that received a gradient
    student_moved: bool = False

    @property
    def needs(self) -> frozenset[str]:
        return frozenset(self.method.needs) | {"logits"}

    @property
    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in _named_params(self.adapters) if p.requires_grad]

    def undeclared(self) -> None:
        for who, reads in (("student", self.s_reads), ("teacher", self.t_reads)):
            if reads - self.needs:
                self.check.fail("undeclared-taps", f"reads the {who}'s {sorted(reads - self.needs)} but needs = "
                                                   f"{sorted(self.method.needs)}; declare every tap it reads")

    def forward(self) -> None:
        """One forward serves every probe: the teacher is frozen, the graph retained."""
        self.student.train()
        self.batch = self.bench.data.take(self.bench.schedule.batch_size)
        with self.check.rule("needs-satisfied"):
            self.s_out = self.bench.forward(self.student, self.batch.x, self.needs)
            with torch.no_grad():
                self.t_out = (self.bench.forward(self.teacher, self.batch.x, self.needs)
                              if self.method.uses_teacher else None)
            for who, out in (("student", self.s_out), ("teacher", self.t_out)):
                for tap in sorted(self.needs) if out is not None else ():
                    if getattr(out, tap) is None:
                        self.check.fail("needs-satisfied", f"declares {tap!r} in needs, but the pair's forward "
                                                           f"gave the {who} no {tap!r}")

    def build_adapters(self, seed: int) -> None:
        check = self.check
        with check.rule("adapters"):
            torch.manual_seed(seed + 1)
            adapters = self.method.adapters(_watch(self.s_out.detach(), self.s_reads), _watch(self.t_out, self.t_reads))
            self.undeclared()
            if adapters is not None and not isinstance(adapters, nn.Module):
                check.fail("adapters", f"adapters() returned {type(adapters).__name__}; return an nn.Module or None")
            if adapters is not None:
                self.bench.accel.model(adapters).train()
            owned = ({id(p): "teacher" for p in self.teacher.parameters()}
                     | {id(p): "student" for p in self.student.parameters()})
            for name, p in _named_params(adapters):
                if id(p) in owned:
                    rule = "teacher-no-gradients" if owned[id(p)] == "teacher" else "adapters"
                    check.fail(rule, f"adapter parameter {name!r} is a {owned[id(p)]} weight; adapters must be "
                                     "new modules (they are trained and counted apart)")
            self.adapters = adapters

    def at(self, point: float) -> None:
        """loss() at one progress point: named finite terms, gradients to the student only."""
        check, at = self.check, f"at progress {point:g}"
        self.method.progress = point
        for p in list(self.student.parameters()) + [p for _, p in self.trainable]:
            p.grad = None
        t_out = _clone(self.t_out)
        t_snapshot = {k: v.clone() for k, v in _tensors(t_out).items()}
        with check.rule("finite-scalar-terms"):
            try:
                named = self.method.loss(_watch(self.s_out, self.s_reads), _watch(t_out, self.t_reads), self.batch.y)
            except Exception:
                self.undeclared()  # a crash after reading an undeclared tap breaks that rule
                raise
            _check_terms(check, named, at)
        with check.rule("undeclared-taps"):
            self.undeclared()
        self._student_gradients(sum(named.values()), at)
        self._teacher_untouched(t_out, t_snapshot, at)
        self.reached |= {n for n, p in self.trainable if p.grad is not None}

    def _student_gradients(self, total: Tensor, at: str) -> None:
        with self.check.rule("student-gradients"):
            if not total.requires_grad:
                self.check.fail("student-gradients", f"{at} no loss term depends on the student's outputs "
                                                     "(are they detached?)")
            total.backward(retain_graph=True)
            grads = [(n, p.grad) for n, p in self.student.named_parameters() if p.grad is not None]
            if not grads:
                self.check.fail("student-gradients", f"{at} the loss reaches no student parameter")
            for n, g in grads:
                if not torch.isfinite(g).all():
                    self.check.fail("student-gradients", f"{at} the gradient of student parameter {n!r} "
                                                         "is not finite")
            self.student_moved = self.student_moved or any(bool(g.abs().sum() > 0) for _, g in grads)

    def _teacher_untouched(self, t_out: Outputs | None, t_snapshot: dict[str, Tensor], at: str) -> None:
        check = self.check
        with check.rule("teacher-no-gradients"):
            leaked = [n for n, p in self.teacher.named_parameters() if p.grad is not None or p.requires_grad]
            if leaked:
                check.fail("teacher-no-gradients", f"{at} teacher parameters {leaked[:3]} require or received "
                                                   "gradients; the teacher must stay frozen")
            touched = [k for k, v in _tensors(t_out).items() if v.requires_grad or v.grad is not None]
            if touched:
                check.fail("teacher-no-gradients", f"{at} gradients flow into the teacher's outputs "
                                                   f"{touched[:3]}; use teacher tensors as constants")
        with check.rule("teacher-unchanged"):
            edited = [k for k, v in _tensors(t_out).items() if not torch.equal(v, t_snapshot[k])]
            if edited:
                check.fail("teacher-unchanged", f"{at} loss() changed the teacher's outputs {edited[:3]} in place")

    def finish(self, progress: Sequence[float]) -> None:
        check = self.check
        with check.rule("student-gradients"):
            if not self.student_moved:
                check.fail("student-gradients", "every student gradient is zero at every progress point")
        unread = sorted(self.needs - {"logits"} - self.s_reads - self.t_reads)
        if unread:
            check.report.notes.append(f"declares {unread} in needs but never reads them; every declared tap is "
                                      "computed for student and teacher at each step")
        with check.rule("adapter-gradients"):
            unreached = [n for n, _ in self.trainable if n not in self.reached]
            if unreached:
                check.fail("adapter-gradients", f"adapter parameters {unreached[:5]} never receive a gradient at "
                                                f"progress {', '.join(f'{p:g}' for p in progress)}; use them in "
                                                "loss() (or freeze them)")


def _check_terms(check: _Check, named: Any, at: str) -> None:
    rule = "finite-scalar-terms"
    if not isinstance(named, Mapping) or not named:
        check.fail(rule, f"{at} loss() returned {type(named).__name__} {named!r:.80}; "
                         "return a non-empty dict of named scalar tensors")
    for key, value in named.items():
        if not isinstance(key, str) or not key:
            check.fail(rule, f"{at} loss() returned a term named {key!r}; names must be non-empty strings")
        if not isinstance(value, Tensor):
            check.fail(rule, f"{at} loss term {key!r} is {type(value).__name__}, not a tensor")
        if value.dim() != 0:
            check.fail(rule, f"{at} loss term {key!r} has shape {tuple(value.shape)}, not a scalar "
                             "(0-dim tensor); reduce it, e.g. with .mean()")
        if not value.is_floating_point():
            check.fail(rule, f"{at} loss term {key!r} has dtype {value.dtype}, not a floating type")
        if not torch.isfinite(value):
            check.fail(rule, f"{at} loss term {key!r} is {float(value)}, not finite")


def _train_twice(check: _Check, make: Any, bench: _Bench, teacher: nn.Module, seed: int, steps: int) -> None:
    """Train through the one loop twice from the same seed: teacher untouched, runs identical."""
    before = _state(teacher)
    runs = []
    for _ in range(2):
        method: Method = make()
        student = bench.student(teacher, seed)
        adapters = student_adapters(student, method, bench.data, bench.schedule, bench.forward, teacher, seed,
                                    bench.accel.model)
        with check.rule("finite-scalar-terms"):
            try:
                result = train_student(student, method, bench.data, Budget(steps=steps), bench.schedule,
                                       bench.forward, seed=seed, teacher=teacher, adapters=adapters)
            except NumericalFault as exc:
                check.fail("finite-scalar-terms", f"in the training loop: {exc}")
        with check.rule("teacher-unchanged"):
            changed = _changed(before, _state(teacher))
            if changed:
                check.fail("teacher-unchanged", f"the teacher's {changed[:3]} changed during {steps} training steps")
            if teacher.training:
                check.fail("teacher-unchanged", "the teacher was switched to train mode during training")
            if any(p.requires_grad for p in teacher.parameters()):
                check.fail("teacher-unchanged", "the teacher's parameters were unfrozen (requires_grad) during training")
        runs.append((result.losses, _state(student), _state(adapters)))
    with check.rule("deterministic"):
        (l1, s1, a1), (l2, s2, a2) = runs
        if l1 != l2:
            check.fail("deterministic", f"two runs with seed {seed} give losses {l1} and {l2}; draw randomness "
                                        "from torch's seeded generator, not Python's random or numpy")
        diff = _changed(s1, s2) + _changed(a1, a2)
        if diff:
            check.fail("deterministic", f"two runs with seed {seed} end with different weights {diff[:3]}")


# -- pairs ---------------------------------------------------------------------------------------
class _PairProbe(Method):
    """Conformance probe for pairs: CE, soft targets, and a small term on every tap exposed."""

    name = "conformance-probe"
    needs: frozenset[str] = frozenset({"logits"})

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        terms = {"ce": F.cross_entropy(student.logits.float(), labels),
                 "kd": F.kl_div(F.log_softmax(student.logits.float(), -1), F.log_softmax(teacher.logits.float(), -1),
                                log_target=True, reduction="batchmean")}
        for tap in sorted(self.needs - {"logits"}):
            tensors = _tensors(Outputs(logits=student.logits, **{tap: getattr(student, tap)}))
            terms[tap] = 1e-3 * sum(t.float().pow(2).mean() for k, t in tensors.items() if k != "logits")
        return terms


_SHAPES = {  # tap → (rank of each tensor, is a list)
    "logits": (2, False), "features": (4, True), "hidden_states": (3, True), "attentions": (4, True),
    "embeddings": (3, False),
}


def check_pair(
    pair: type[Pair] | str,
    *,
    profile: str = "smoke",
    seed: int = 0,
    steps: int = 2,
    batch_size: int = 8,
    end_to_end: bool = True,
    extra: Sequence[type] = (),
    registry: Registry | None = None,
    device: str = "cpu",
    data_dir: Path | None = None,
    out: Path | None = None,
) -> Report:
    """Check a pair: schedule, data, deterministic builds, separate weights, taps, frozen teacher, a cell.

    `pair` is a class or a registered name; `extra` are other classes of your plugin the
    check needs (the pair's dataset when it is new). Returns a `Report`; raises `ConformanceError`.
    """
    base = registry or load_registry()
    cls = _resolve("pair", pair, base)
    check = _Check(f"pair {getattr(cls, 'name', None) or cls!r}")
    with check.rule("declaration"):
        why = problem("pair", cls)
        if why:
            check.fail("declaration", why)
        for other in extra:
            why = problem(_kind(other), other)
            if why:
                check.fail("declaration", f"extra class {other.__name__}: {why}")
    private = _private_registry(base, [*extra, cls])
    with check.rule("declaration"):
        if cls.dataset not in private.datasets:
            check.fail("declaration", f"dataset {cls.dataset!r} is not provided by any installed plugin; "
                                      "pass its class in extra=[...] to check it before installing")
    obj = cls()
    _check_declared_pair(check, obj, profile)
    dev = torch.device(device)
    with check.rule("data"):
        bench = _bench(obj, private, profile, steps, batch_size, dev, data_dir)
        _check_splits(check, bench.splits, profile)
    teacher = _check_builds(check, bench, seed)
    taps = frozenset(cls.taps) | {"logits"}
    probe = type("ConformanceProbe", (_PairProbe,), {"needs": taps})
    _probe_method(check, probe, {}, bench, teacher, seed, (0.0,))
    _train_twice(check, probe, bench, teacher, seed, steps)
    if end_to_end:
        private.methods[probe.name] = Entry("method", probe.name, probe, UNDER_TEST, "under test")
        _run_cell(check, private, cls.name, probe.name, seed, {}, profile, dev, data_dir, out)
    return check.report


def _check_declared_pair(check: _Check, obj: Pair, profile: str) -> None:
    with check.rule("schedule"):
        s = obj.schedule(profile)
        if not isinstance(s, Schedule):
            check.fail("schedule", f"schedules[{profile!r}] is {type(s).__name__}, not a kdbench.Schedule")
        for key in ("steps", "teacher_steps", "batch_size"):
            if not (isinstance(getattr(s, key), int) and getattr(s, key) > 0):
                check.fail("schedule", f"schedules[{profile!r}].{key} = {getattr(s, key)!r}; it must be a positive int")
    with check.rule("teacher-recipe"):
        recipe = obj.teacher_recipe(profile)
        if not isinstance(recipe, dict) or not recipe:
            check.fail("teacher-recipe", f"teacher_recipe({profile!r}) returned {recipe!r}; return a non-empty dict")
        if json.dumps(recipe, sort_keys=True, default=str) != json.dumps(obj.teacher_recipe(profile),
                                                                         sort_keys=True, default=str):
            check.fail("teacher-recipe", "teacher_recipe() differs between two calls; it names a zoo entry")


def _check_splits(check: _Check, splits: Splits, profile: str) -> None:
    for split in ("train", "val", "test"):
        part: TensorData = getattr(splits, split)
        if len(part) == 0:
            check.fail("data", f"the {split} split is empty under profile {profile!r}")
        y = part.y
        if y.dtype != torch.long or int(y.min()) < 0 or int(y.max()) >= splits.num_classes:
            check.fail("data", f"{split} labels must be int64 in [0, {splits.num_classes})")


def _check_builds(check: _Check, bench: _Bench, seed: int) -> nn.Module:
    """Deterministic builds, separate weights, declared taps, a frozen teacher; returns the teacher."""
    with check.rule("deterministic"):
        teacher, t2 = bench.teacher(), bench.teacher()
        if _changed(_state(teacher), _state(t2)):
            check.fail("deterministic", "build_teacher() gives different weights under the same torch seed")
        student, s2 = bench.student(teacher, seed), bench.student(teacher, seed)
        diff = _changed(_state(student), _state(s2))
        if diff:
            check.fail("deterministic", f"build_student() gives different weights under the same seed: {diff[:3]}")
    with check.rule("separate-weights"):
        t_ptrs = {p.data_ptr() for p in teacher.parameters() if p.numel()}
        shared = [n for n, p in student.named_parameters() if p.numel() and p.data_ptr() in t_ptrs]
        if shared:
            check.fail("separate-weights", f"student parameters {shared[:3]} share storage with the teacher; "
                                           "copy teacher weights (clone) when initialising the student from them")
    taps = frozenset(bench.pair.taps) | {"logits"}
    batch = bench.data.take(bench.schedule.batch_size)
    with check.rule("taps"):
        before = _state(teacher)
        for who, model in (("teacher", teacher), ("student", student)):
            with torch.no_grad():
                outputs = bench.pair.forward(model, batch.x, taps)
            _check_taps(check, outputs, taps, who, len(batch), bench.splits.num_classes)
    with check.rule("teacher-unchanged"):
        changed = _changed(before, _state(teacher))
        if changed:
            check.fail("teacher-unchanged", f"a forward pass changed the teacher's {changed[:3]} "
                                            "(is it run in train mode, updating batch-norm statistics?)")
        if teacher.training:
            check.fail("teacher-unchanged", "the pair's forward switched the teacher to train mode")
    return teacher


def _check_taps(check: _Check, out: Any, taps: frozenset[str], who: str, batch: int, num_classes: int) -> None:
    if not isinstance(out, Outputs):
        check.fail("taps", f"forward() returned {type(out).__name__} for the {who}, not kdbench.Outputs")
    for tap in sorted(taps):
        value = getattr(out, tap)
        rank, is_list = _SHAPES[tap]
        if value is None:
            check.fail("taps", f"the pair declares tap {tap!r} but forward() gave the {who} none")
        items = value if is_list else [value]
        if is_list and (not isinstance(value, (list, tuple)) or not value):
            check.fail("taps", f"the {who}'s {tap!r} must be a non-empty list of tensors, not {type(value).__name__}")
        for i, t in enumerate(items):
            where = f"the {who}'s {tap}" + (f"[{i}]" if is_list else "")
            if not isinstance(t, Tensor) or t.dim() != rank or t.shape[0] != batch:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                check.fail("taps", f"{where} has shape {shape}; expected {rank} dims with batch {batch} first")
            if not torch.isfinite(t).all():
                check.fail("taps", f"{where} is not finite")
    if tuple(out.logits.shape) != (batch, num_classes):
        check.fail("taps", f"the {who}'s logits have shape {tuple(out.logits.shape)}, expected {(batch, num_classes)}")
