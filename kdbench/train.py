"""The one training loop and its budget.

Methods differ by their loss and adapters only. The loop runs the frozen teacher
(unless the method ignores it or its outputs are cached), sums the method's named
terms, steps AdamW with a cosine schedule over the budget, and stops when the budget
(steps, or wall seconds with teacher forwards included) is spent. A non-finite loss
or gradient ends the cell with the step and the term that caused it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .api import Budget, Forward, Method, Outputs, Schedule, TensorData
from .data import batch_indices

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
) -> TrainResult:
    """Train `student` (and `adapters`) with `method` until `budget` is spent.

    `data` must already be on the training device. The data order comes from `seed`
    alone, so every method sees the same batches. `teacher_logits`, when given, are
    the cached teacher logits for every training example and replace teacher forwards.

    `evaluate`, when given, is called (it returns a validation accuracy) after the step
    that reaches each of `eval_points` evenly spaced points of the budget — in steps, or
    in seconds in time mode — and the result's `curve` keeps {step, seconds, val_acc}
    at each. The clock is paused while it runs: evaluation time never counts against a
    time budget, nor in the returned `seconds`. Points that fall within one step share
    one evaluation, so a budget of fewer steps than points gives fewer points.
    """
    needs = frozenset(method.needs) | {"logits"}
    use_teacher = method.uses_teacher and (teacher is not None or teacher_logits is not None)
    params = list(student.parameters()) + (list(adapters.parameters()) if adapters is not None else [])
    base_lr = lr if lr is not None else schedule.lr
    opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=schedule.weight_decay)
    device = data.y.device
    order = batch_indices(len(data), schedule.batch_size, seed, device)
    total_steps = budget.steps if budget.mode == "steps" else None
    student.train()
    if adapters is not None:
        adapters.train()
    if teacher is not None:
        set_teacher_frozen(teacher)

    step, teacher_seconds, terms, losses = 0, 0.0, {}, []
    curve: list[dict[str, float]] = []
    horizon = float(total_steps) if total_steps is not None else float(budget.seconds)  # type: ignore[arg-type]
    marks = [horizon * (i + 1) / eval_points for i in range(eval_points)] if evaluate is not None else []
    paused = 0.0  # seconds spent in `evaluate`, excluded from the budget
    start = clock()
    while True:
        elapsed = clock() - start - paused
        if total_steps is not None:
            if step >= total_steps:
                break
            progress = step / total_steps
        else:
            if elapsed >= budget.seconds:  # type: ignore[operator]
                break
            progress = min(elapsed / budget.seconds, 1.0)  # type: ignore[operator]
        method.progress = progress
        for group in opt.param_groups:
            group["lr"] = base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

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
            raise NumericalFault(f"non-finite gradient norm at step {step} (loss terms: {values})", step, "gradient")
        opt.step()
        step += 1
        value = float(total.detach())
        losses.append(value)
        terms = {k: float(v.detach()) for k, v in named.items()}
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
    return TrainResult(step, clock() - start - paused, teacher_seconds, terms, losses, curve)


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
