"""The one training loop and its budget.

Methods differ by their loss, adapters and phases only. The loop runs the frozen
teacher (unless the method ignores it or its outputs are cached), sums the method's
named terms, steps AdamW with a cosine schedule over the budget, and stops when the
budget (steps, or wall seconds with teacher forwards included) is spent. A method
that declares phases (TinyBERT's stages) gets them as separate trainings inside that
one budget: a fresh AdamW and the phase's own schedule at every boundary, read from
the phases as data. A non-finite loss or gradient ends the cell with the step and the
term that caused it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .api import Budget, Forward, Method, Outputs, Phase, Schedule, TensorData
from .data import training_batches
from .errors import UsageError

#: The clock time budgets are measured with (tests replace it with a fake one).
clock: Callable[[], float] = time.perf_counter


class NumericalFault(RuntimeError):
    """A non-finite loss or gradient; the cell fails with this message.

    `step` is the 0-based optimizer step; `term` names the loss term(s) that were not
    finite, or "gradient" when the loss was finite but its gradient was not.
    """

    def __init__(self, message: str, step: int, term: str) -> None:
        super().__init__(message)
        self.step = step
        self.term = term


@dataclass
class TrainResult:
    steps: int
    seconds: float
    teacher_seconds: float
    terms: dict[str, float]  # each loss term's last value
    losses: list[float] = field(default_factory=list)  # total loss per step
    curve: list[dict[str, float]] = field(default_factory=list)  # [{step, seconds, val_acc}] (see `train`)
    #: One entry per declared phase, in order: {name, fraction, schedule, warmup, lr, steps, seconds,
    #: terms}; empty for a method that declares no phases.
    phases: list[dict[str, Any]] = field(default_factory=list)
    #: The `phase_check` callback's results at the start and after every phase:
    #: {"at": "start" | "end of <phase>", "step": int, **check}; empty without a callback.
    phase_checks: list[dict[str, Any]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # the learning rate of each step


class SupervisedLoss(Method):
    """Cross-entropy on labels; how teachers are trained (not a registered method)."""

    name = "supervised"
    uses_teacher = False

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student.logits, labels)}


def set_teacher_frozen(teacher: nn.Module) -> None:
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)




def optimizer_for(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """A fresh optimizer: at the start of the cell, and again at every phase boundary."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def method_phases(method: Method, schedule: Schedule) -> tuple[tuple[Phase, ...], bool]:
    """The method's phases (checked) and whether it declared any.

    A method without phases trains as one: the pair's warm-up (`Schedule.warmup`), then
    cosine from the cell's lr to 0 over the budget."""
    declared = method.phases()
    if declared is None:
        return (Phase("train", 1.0, schedule="cosine", warmup=schedule.warmup),), False
    phases = tuple(declared)
    if not phases or abs(sum(p.fraction for p in phases) - 1.0) > 1e-6:
        raise UsageError(f"method {method.name!r}: phase fractions must sum to 1, not "
                         f"{sum(p.fraction for p in phases):g} ({', '.join(p.name for p in phases)})")
    return phases, True


def phase_ends(phases: tuple[Phase, ...], total: float, whole: bool) -> list[float]:
    """Where each phase ends in the budget (steps when `whole`, else seconds); the last is `total`.

    Cumulative rounding, so the phases' steps always sum to the cell's.
    """
    ends, cum = [], 0.0
    for p in phases[:-1]:
        cum += p.fraction
        ends.append(float(round(total * cum)) if whole else total * cum)
    return [*ends, total]


def train(
    student: nn.Module,
    method: Method,
    data: TensorData,
    budget: Budget,
    schedule: Schedule,
    forward: Forward,
    *,
    seed: int,
    lr: float | None = None,
    teacher: nn.Module | None = None,
    teacher_logits: Tensor | Outputs | None = None,
    adapters: nn.Module | None = None,
    on_step: Callable[[int, float], None] | None = None,
    evaluate: Callable[[], float] | None = None,
    eval_points: int = 10,
    phase_check: Callable[[], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train `student` (and `adapters`) with `method` until `budget` is spent.

    `data` must already be on the training device. The data order comes from `seed`
    alone, so every method sees the same batches. `teacher_logits`, when given, are the
    cached teacher logits (a tensor) or `Outputs` of every training example: no teacher forwards.

    Phases (`Method.phases`) run one after another inside the one budget, each with a
    fresh optimizer and its own schedule: phase i ends at its cumulative fraction of the
    steps (rounded) or of the seconds. Without phases: one (see `method_phases`).

    `evaluate`, when given, is called (it returns a validation accuracy) after the step
    that reaches each of `eval_points` evenly spaced points of the budget — in steps, or
    in seconds in time mode — and the result's `curve` keeps {step, seconds, val_acc}
    at each. The clock is paused while it runs: evaluation time never counts against a
    time budget, nor in the returned `seconds`. Points that fall within one step share
    one evaluation, so a budget of fewer steps than points gives fewer points.

    `phase_check` (e.g. `representation_check`) is called before the first step and after
    every phase, clock paused and random state restored; `phase_checks` keeps its dicts.
    """
    params = list(student.parameters()) + (list(adapters.parameters()) if adapters is not None else [])
    phases, declared = method_phases(method, schedule)
    base_lr = lr if lr is not None else schedule.lr
    opt = optimizer_for(params, base_lr * phases[0].lr_scale, schedule.weight_decay)
    order = training_batches(data, schedule, seed)
    total_steps = budget.steps if budget.mode == "steps" else None
    _train_mode(student, adapters, teacher)
    horizon = float(total_steps) if total_steps is not None else float(budget.seconds)  # type: ignore[arg-type]
    loop = _Loop(student, adapters, method, data, schedule, forward, params, order, total_steps,
                 teacher if method.uses_teacher else None, teacher_logits if method.uses_teacher else None,
                 on_step, evaluate, phase_check,
                 marks=[horizon * (i + 1) / eval_points for i in range(eval_points)] if evaluate is not None else [])
    loop.start = clock()
    loop.check("start")
    offset = 0.0  # the fraction of the budget before this phase
    for index, (phase, end) in enumerate(zip(phases, phase_ends(phases, horizon, total_steps is not None))):
        if index > 0:
            opt = optimizer_for(params, base_lr * phase.lr_scale, schedule.weight_decay)
        loop.run_phase(opt, phase, base_lr * phase.lr_scale, offset, end, first=index == 0, log=declared)
        offset += phase.fraction
    return TrainResult(loop.step, loop.elapsed(), loop.teacher_seconds, loop.terms, loop.losses, loop.curve,
                       loop.phases, loop.checks, loop.lrs)


def _train_mode(student: nn.Module, adapters: nn.Module | None, teacher: nn.Module | None) -> None:
    student.train()
    if adapters is not None:
        adapters.train()
    if teacher is not None:
        set_teacher_frozen(teacher)


@dataclass
class _Loop:
    """The state of one run of `train`: what it trains, where it stands, what it keeps."""

    student: nn.Module
    adapters: nn.Module | None
    method: Method
    data: TensorData
    schedule: Schedule
    forward: Forward
    params: list[nn.Parameter]
    order: Any  # an iterator of index tensors (see `kdbench.data.training_batches`)
    total_steps: int | None
    teacher: nn.Module | None
    teacher_logits: Tensor | Outputs | None
    on_step: Callable[[int, float], None] | None
    evaluate: Callable[[], float] | None
    phase_check: Callable[[], dict[str, Any]] | None
    marks: list[float]
    start: float = 0.0
    paused: float = 0.0  # seconds spent in `evaluate` and `phase_check`, excluded from the budget
    step: int = 0
    teacher_seconds: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    phase_terms: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def elapsed(self) -> float:
        return clock() - self.start - self.paused

    def run_phase(self, opt: torch.optim.Optimizer, phase: Phase, lr: float, offset: float, end: float, *,
                  first: bool, log: bool) -> None:
        """Step until the phase's `end` (a step count, or seconds since the start); `log`
        keeps its steps, seconds and last terms; the phase check runs after it."""
        first_step, begun_seconds = self.step, (self.elapsed() if not first else 0.0)
        begun = float(self.step) if self.total_steps is not None else begun_seconds
        self.phase_terms = {}
        while True:
            elapsed = self.elapsed()
            if self.total_steps is not None:
                if self.step >= end:
                    break
                local = (self.step - begun) / (end - begun)
            else:
                if elapsed >= end:
                    break
                local = min((elapsed - begun) / (end - begun), 1.0)
            self.method.progress = offset + phase.fraction * local
            for group in opt.param_groups:
                group["lr"] = lr * phase.lr_factor(local)
            self.lrs.append(opt.param_groups[0]["lr"])
            self.one_step(opt)
            self.maybe_evaluate()
        if log:
            self.phases.append({
                "name": phase.name, "fraction": phase.fraction, "schedule": phase.schedule, "warmup": phase.warmup,
                "lr": lr, "steps": self.step - first_step, "seconds": round(self.elapsed() - begun_seconds, 4),
                "terms": self.phase_terms})
        self.check(f"end of {phase.name}")

    def one_step(self, opt: torch.optim.Optimizer) -> None:
        needs = frozenset(self.method.needs) | {"logits"}
        idx = next(self.order)
        batch = self.data.index(idx)
        t_out = None
        if self.teacher is not None or self.teacher_logits is not None:
            t0 = clock()
            if isinstance(self.teacher_logits, Outputs):  # cached taps, stored in half precision
                t_out = self.teacher_logits.rows(idx, torch.float32)
            elif self.teacher_logits is not None:
                t_out = Outputs(logits=self.teacher_logits[idx])
            else:
                with torch.no_grad():
                    t_out = self.forward(self.teacher, batch.x, needs)  # type: ignore[arg-type]
            self.teacher_seconds += clock() - t0
        s_out = self.forward(self.student, batch.x, needs)
        named = self.method.loss(s_out, t_out, batch.y)  # type: ignore[arg-type]
        total = sum(named.values())
        step = self.step
        if not torch.isfinite(total):
            bad = ", ".join(k for k, v in named.items() if not torch.isfinite(v)) or "total"
            raise NumericalFault(f"non-finite loss at step {step} in term {bad}", step, bad)
        opt.zero_grad(set_to_none=True)
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.schedule.grad_clip)
        if not torch.isfinite(norm):
            values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in named.items())
            raise NumericalFault(f"non-finite gradient norm at step {step} (loss terms: {values})", step, "gradient")
        opt.step()
        self.step += 1
        value = float(total.detach())
        self.losses.append(value)
        self.terms = self.phase_terms = {k: float(v.detach()) for k, v in named.items()}
        if self.on_step is not None:
            self.on_step(self.step, value)

    def maybe_evaluate(self) -> None:
        """Evaluate when the step just taken reached the next budget-curve point."""
        if not self.marks:
            return
        seconds = self.elapsed()
        now = self.step if self.total_steps is not None else seconds
        if now >= self.marks[0] - 1e-9:
            while self.marks and now >= self.marks[0] - 1e-9:
                self.marks.pop(0)
            t0 = clock()
            self.curve.append({"step": self.step, "seconds": round(seconds, 4), "val_acc": self.evaluate()})  # type: ignore[misc]
            self.paused += clock() - t0

    def check(self, at: str) -> None:
        """Run the phase check (if any) with the clock paused and the random state restored."""
        if self.phase_check is None:
            return
        t0 = clock()
        device = self.data.y.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.checks.append({"at": at, "step": self.step, **self.phase_check()})
        _train_mode(self.student, self.adapters, None)
        self.paused += clock() - t0


def _representation(out: Outputs) -> tuple[Tensor, Tensor]:
    """(pooled (B, D), per-position rows (N, D)) of a model's deepest representation.

    Text: the last hidden state, averaged over real tokens, and its real-token rows;
    images: the last feature map, averaged over positions, and its per-position rows;
    otherwise the logits for both.
    """
    if out.hidden_states:
        h = out.hidden_states[-1].float()
        mask = out.mask.bool() if out.mask is not None else torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return pooled, h[mask]
    if out.features:
        f = out.features[-1].float()
        return f.mean((2, 3)), f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
    return out.logits.float(), out.logits.float()


def probe_r2(x: Tensor, y: Tensor, rows_per_feature: int = 10) -> float:
    """R² of a linear map x → y, fitted on even rows, scored on odd rows.

    Near 1 when y is a linear function of x, about 0 (or below) when x carries nothing
    of y. x is first reduced to its leading principal axes, at most one per
    `rows_per_feature` fitting rows, so a small batch of a wide model is not memorised.
    """
    x, y = x.double(), y.double()
    fit_x, fit_y, test_x, test_y = x[0::2], y[0::2], x[1::2], y[1::2]
    if len(test_x) == 0:
        return float("nan")
    mx, my = fit_x.mean(0), fit_y.mean(0)
    a, b = fit_x - mx, fit_y - my
    keep = max(1, min(a.shape[1], len(a) // rows_per_feature))
    axes = torch.linalg.svd(a, full_matrices=False)[2][:keep].T  # (D, keep)
    a = a @ axes
    gram = a.T @ a
    w = torch.linalg.solve(gram + 1e-6 * float(gram.diagonal().mean() + 1e-12) * torch.eye(keep, dtype=gram.dtype,
                                                                                          device=gram.device), a.T @ b)
    pred = (test_x - mx) @ axes @ w + my
    sse = ((test_y - pred) ** 2).sum()
    sst = ((test_y - test_y.mean(0)) ** 2).sum()
    return float(1.0 - sse / sst) if sst > 0 else float("nan")


def representation_check(
    student: nn.Module, teacher: nn.Module | None, forward: Forward, batch: TensorData, taps: frozenset[str] | set[str],
) -> Callable[[], dict[str, float]]:
    """A cheap check of the student's representation on a fixed `batch` (e.g. validation
    examples), for `train(..., phase_check=...)`: it shows a representation collapse.

    - `pooled_spread`: the pooled student vector's standard deviation across the batch's
      examples, averaged over dimensions (`teacher_pooled_spread` for scale). A student
      whose tokens all map to one vector has a spread near 0, and its classifier can only
      learn the class prior.
    - `hidden_r2`: how much of the teacher's deepest representation a linear map of the
      student's predicts (ridge probe over real tokens, fitted on half, scored on the
      other half); needs a teacher. Scale-free: it sees lost information, not shrinkage.

    The teacher's side is computed once. Both run in eval mode without gradients.
    """
    needs = frozenset({"logits"}) | (frozenset(taps) & {"hidden_states", "features"})
    teacher_side: list[tuple[Tensor, Tensor]] = []

    @torch.no_grad()
    def check() -> dict[str, float]:
        was = student.training
        student.eval()
        pooled, rows = _representation(forward(student, batch.x, needs))
        student.train(was)
        out = {"pooled_spread": float(pooled.std(0).mean())}
        if teacher is not None:
            if not teacher_side:
                teacher_side.append(_representation(forward(teacher, batch.x, needs)))
            t_pooled, t_rows = teacher_side[0]
            out["teacher_pooled_spread"] = float(t_pooled.std(0).mean())
            out["hidden_r2"] = probe_r2(rows, t_rows) if rows.shape[0] == t_rows.shape[0] else float("nan")
        return out

    return check


@torch.no_grad()
def predict(model: nn.Module, forward: Forward, data: TensorData, batch_size: int = 512) -> Tensor:
    """Logits of `model` over `data`, in order, in eval mode."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=data.y.device)
        chunks.append(forward(model, data.index(idx).x, frozenset({"logits"})).logits.float())
    model.train(was_training)
    return torch.cat(chunks)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())
