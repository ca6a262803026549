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
from .data import batch_indices
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


#: A method without phases trains as this one phase: cosine from the cell's lr to 0 over the budget.
ONE_PHASE = (Phase("train", 1.0, schedule="cosine"),)


def optimizer_for(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """A fresh optimizer: at the start of the cell, and again at every phase boundary."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def method_phases(method: Method) -> tuple[tuple[Phase, ...], bool]:
    """The method's phases (checked) and whether it declared any."""
    declared = method.phases()
    if declared is None:
        return ONE_PHASE, False
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
    teacher_logits: Tensor | None = None,
    adapters: nn.Module | None = None,
    on_step: Callable[[int, float], None] | None = None,
    evaluate: Callable[[], float] | None = None,
    eval_points: int = 10,
    phase_check: Callable[[], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train `student` (and `adapters`) with `method` until `budget` is spent.

    `data` must already be on the training device. The data order comes from `seed`
    alone, so every method sees the same batches. `teacher_logits`, when given, are
    the cached teacher logits for every training example and replace teacher forwards.

    A method that declares phases (`Method.phases`) trains them one after another
    inside the one budget: phase i gets its fraction of the steps (cumulative
    rounding), or in time mode runs until its fraction of the seconds, counted from
    the cell's start, is spent; each phase starts with a fresh optimizer and its own
    learning-rate schedule. Without phases: one AdamW, cosine over the whole budget.

    `evaluate`, when given, is called (it returns a validation accuracy) after the step
    that reaches each of `eval_points` evenly spaced points of the budget — in steps, or
    in seconds in time mode — and the result's `curve` keeps {step, seconds, val_acc}
    at each. The clock is paused while it runs: evaluation time never counts against a
    time budget, nor in the returned `seconds`. Points that fall within one step share
    one evaluation, so a budget of fewer steps than points gives fewer points.

    `phase_check`, when given, is called before the first step and after every phase
    (clock paused, random state restored afterwards); it returns a dict of numbers
    (e.g. `representation_check`), kept in the result's `phase_checks`.
    """
    needs = frozenset(method.needs) | {"logits"}
    use_teacher = method.uses_teacher and (teacher is not None or teacher_logits is not None)
    params = list(student.parameters()) + (list(adapters.parameters()) if adapters is not None else [])
    base_lr = lr if lr is not None else schedule.lr
    phases, declared = method_phases(method)
    opt = optimizer_for(params, base_lr * phases[0].lr_scale, schedule.weight_decay)
    device = data.y.device
    order = batch_indices(len(data), schedule.batch_size, seed, device)
    total_steps = budget.steps if budget.mode == "steps" else None
    student.train()
    if adapters is not None:
        adapters.train()
    if teacher is not None:
        set_teacher_frozen(teacher)

    step, teacher_seconds, terms, losses, lrs = 0, 0.0, {}, [], []
    curve: list[dict[str, float]] = []
    phase_log: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    horizon = float(total_steps) if total_steps is not None else float(budget.seconds)  # type: ignore[arg-type]
    ends = phase_ends(phases, horizon, total_steps is not None)
    marks = [horizon * (i + 1) / eval_points for i in range(eval_points)] if evaluate is not None else []
    paused = 0.0  # seconds spent in `evaluate` and `phase_check`, excluded from the budget
    start = clock()

    def run_check(at: str) -> None:
        nonlocal paused
        t0 = clock()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            checks.append({"at": at, "step": step, **phase_check()})  # type: ignore[misc]
        student.train()
        if adapters is not None:
            adapters.train()
        paused += clock() - t0

    if phase_check is not None:
        run_check("start")
    begun = 0.0  # the budget spent when the phase starts (steps or seconds)
    begun_seconds = 0.0  # the seconds spent when the phase starts
    offset = 0.0  # the fraction of the budget before this phase
    for index, phase in enumerate(phases):
        if index > 0:
            opt = optimizer_for(params, base_lr * phase.lr_scale, schedule.weight_decay)
            begun_seconds = clock() - start - paused
            begun = float(step) if total_steps is not None else begun_seconds
        phase_lr, end = base_lr * phase.lr_scale, ends[index]
        first_step, phase_terms = step, {}
        while True:
            elapsed = clock() - start - paused
            if total_steps is not None:
                if step >= end:
                    break
                local = (step - begun) / (end - begun)
            else:
                if elapsed >= end:
                    break
                local = min((elapsed - begun) / (end - begun), 1.0)
            method.progress = offset + phase.fraction * local
            for group in opt.param_groups:
                group["lr"] = phase_lr * phase.lr_factor(local)
            lrs.append(opt.param_groups[0]["lr"])

            idx = next(order)
            batch = data.index(idx)
            t_out = None
            if use_teacher:
                t0 = clock()
                if teacher_logits is not None:
                    t_out = Outputs(logits=teacher_logits[idx])
                else:
                    with torch.no_grad():
                        t_out = forward(teacher, batch.x, needs)
                teacher_seconds += clock() - t0
            s_out = forward(student, batch.x, needs)
            named = method.loss(s_out, t_out, batch.y)  # type: ignore[arg-type]
            total = sum(named.values())
            if not torch.isfinite(total):
                bad = ", ".join(k for k, v in named.items() if not torch.isfinite(v)) or "total"
                raise NumericalFault(f"non-finite loss at step {step} in term {bad}", step, bad)
            opt.zero_grad(set_to_none=True)
            total.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)
            if not torch.isfinite(norm):
                values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in named.items())
                raise NumericalFault(f"non-finite gradient norm at step {step} (loss terms: {values})", step,
                                     "gradient")
            opt.step()
            step += 1
            value = float(total.detach())
            losses.append(value)
            terms = phase_terms = {k: float(v.detach()) for k, v in named.items()}
            if on_step is not None:
                on_step(step, value)
            if marks:
                seconds = clock() - start - paused
                now = step if total_steps is not None else seconds
                if now >= marks[0] - 1e-9:
                    while marks and now >= marks[0] - 1e-9:
                        marks.pop(0)
                    t0 = clock()
                    curve.append({"step": step, "seconds": round(seconds, 4), "val_acc": evaluate()})  # type: ignore[misc]
                    paused += clock() - t0
        offset += phase.fraction
        if declared:
            spent = clock() - start - paused
            phase_log.append({
                "name": phase.name, "fraction": phase.fraction, "schedule": phase.schedule,
                "warmup": phase.warmup, "lr": phase_lr, "steps": step - first_step,
                "seconds": round(spent - begun_seconds, 4),
                "terms": phase_terms,
            })
        if phase_check is not None:
            run_check(f"end of {phase.name}")
    return TrainResult(step, clock() - start - paused, teacher_seconds, terms, losses, curve, phase_log, checks, lrs)


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


def probe_r2(x: Tensor, y: Tensor, ridge: float = 1e-3) -> float:
    """R² of a ridge-regularised linear map x → y, fitted on even rows, scored on odd rows.

    1 when y is a linear function of x, about 0 (or below) when x carries nothing of y.
    """
    x, y = x.double(), y.double()
    fit_x, fit_y, test_x, test_y = x[0::2], y[0::2], x[1::2], y[1::2]
    if len(test_x) == 0:
        return float("nan")
    mx, my = fit_x.mean(0), fit_y.mean(0)
    a, b = fit_x - mx, fit_y - my
    gram = a.T @ a
    lam = ridge * float(gram.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), a.T @ b)
    pred = (test_x - mx) @ w + my
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
