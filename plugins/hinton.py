"""Method `hinton`: soft targets at temperature T (Hinton, Vinyals, Dean 2015, arXiv:1503.02531).

loss = α·CE(student, labels) + (1 − α)·T²·KL(softmax(t/T) ‖ softmax(s/T)).
Defaults T = 4, α = 0.5 (the paper found T in 2.5–4 best for small students).
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from kdbench import Method, Outputs, hookimpl
from kdbench.losses import soft_kl


class Hinton(Method):
    """Soft targets at temperature T plus hard labels (Hinton et al. 2015)."""

    name = "hinton"
    needs = frozenset({"logits"})
    defaults = {"temperature": 4.0, "alpha": 0.5}
    sources = {
        "temperature": "Hinton et al. 2015 (with 30 units per layer, T in 2.5-4 worked best); RepDistiller "
                       "and mdistiller use T = 4 on CIFAR-100",
        "alpha": "kdbench's choice, equal weights; RepDistiller and mdistiller weight CE 0.1 / KD 0.9, and "
                 "Hinton et al. advise a much smaller weight on the hard targets",
    }
    baseline = 1  # the classic every newer method is read against

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        return {
            "ce": self.hp.alpha * F.cross_entropy(student.logits, labels),
            "kd": (1.0 - self.hp.alpha) * soft_kl(student.logits, teacher.logits, self.hp.temperature),
        }


@hookimpl
def kdbench_methods() -> list[type]:
    return [Hinton]


@hookimpl
def kdbench_report_notes(deltas: Any) -> list[str]:
    """Per pair, one sentence: does `hinton`'s gain grow when labels are scarce, as Hinton
    et al. 2015 found (soft targets as a regulariser: 44.5% → 57.0% with 3% of the data)?

    Reproduced in direction when Δ(hinton − reference) under `labels-N` is above 0 with a
    CI excluding 0 and above Δ under `full`; anything else is said as it is."""
    out, ref = [], deltas.reference
    for pair, profile, scenarios in deltas.groups():
        full = deltas.delta(pair, profile, "full", Hinton.name)
        for sc in (s for s in scenarios if s.startswith("labels-")):
            scarce = deltas.delta(pair, profile, sc, Hinton.name)
            if full is None or scarce is None:
                continue
            out.append(f"- **{pair}** ({profile}): Δ(hinton − {ref}) is {scarce.format()} under `{sc}` "
                       f"against {full.format()} under `full`; the label-scarce gain {_regulariser(full, scarce)}.")
    return out + [""] if out else []


def _regulariser(full: Any, scarce: Any) -> str:
    if scarce.mean <= full.mean:
        return "does not reproduce the direction of Hinton et al.'s regulariser result"
    if not scarce.significant:
        return "points the way of Hinton et al.'s regulariser result but is not significant"
    if scarce.mean > 0:
        return "reproduces the direction of Hinton et al.'s regulariser result"
    return "is larger than under `full` but still negative: not Hinton et al.'s regulariser result"


#: Hinton et al. 2015, MNIST test errors of 10,000 (see REFERENCES.md).
PAPER_ERRORS = {"teacher": 67, "student": 146, "distilled at T = 20": 74}
PROTOCOL = ("mlp-hinton", "paper")  # the pair and profile that follow the paper's protocol


@hookimpl
def kdbench_report_sections(deltas: Any) -> list[str]:
    """Hinton et al.'s MNIST protocol, re-run on Fashion-MNIST: the 2×1200 dropout teacher,
    the 2×800 student alone and distilled at T = 20 (and at this plugin's defaults), at the
    paper's student budget, beside the paper's error counts."""
    pair, profile = PROTOCOL
    methods = deltas.methods(pair, profile, "full")
    if deltas.reference not in methods or not any(m.startswith(Hinton.name) for m in methods):
        return []
    teacher = deltas.teacher_accuracy(pair, profile)
    alone = deltas.accuracy(pair, profile, "full", deltas.reference)
    rows = [("teacher (2×1200, dropout)", teacher, 1, alone[2], PAPER_ERRORS["teacher"]),
            (f"`{deltas.reference}` (2×800)", *alone, PAPER_ERRORS["student"])]
    lines = []
    for name, hp in methods.items():
        if name.startswith(Hinton.name):
            acc = deltas.accuracy(pair, profile, "full", name)
            paper = PAPER_ERRORS["distilled at T = 20"] if float(hp.get("temperature", 0)) == 20.0 else None
            rows.append((f"`{name}` (T = {hp.get('temperature')}, α = {hp.get('alpha')})", *acc, paper))
            d = deltas.delta(pair, profile, "full", name)
            if d is not None:
                lines.append(f"- `{name}` − `{deltas.reference}`: {d.format()} points; "
                             f"{_gap_share(acc[0], alone[0], teacher)} {_direction(d)}")
    table = ["| model | seeds | test errors of 10,000 (Fashion-MNIST) | test acc % | Hinton et al., MNIST errors |",
             "|:--|--:|--:|--:|--:|"]
    table += [f"| {name} | {n} | {(1 - acc) * 10_000:.0f} | {acc * 100:.2f} | {paper if paper else '—'} |"
              for name, acc, n, _, paper in rows]
    return ["## Hinton et al.'s protocol", "",
            f"`{pair}` at the `{profile}` profile follows Hinton et al. 2015's MNIST set-up on Fashion-MNIST: the "
            "2×1200 dropout teacher, the 2×800 student trained alone and on soft targets, at the paper's student "
            "budget. Errors are per 10,000 test images (mean over seeds); Fashion-MNIST is harder than MNIST, so "
            "compare directions and shares of the gap, not counts.", "", *table, "", *lines, ""]


def _gap_share(distilled: float, alone: float, teacher: float) -> str:
    """How much of the teacher–student gap distillation closed, against the paper's share."""
    p = PAPER_ERRORS
    closed = (p["student"] - p["distilled at T = 20"]) / (p["student"] - p["teacher"])
    paper = f"the paper's T = 20 closed {closed:.0%} of it"
    if teacher <= alone:
        return f"the teacher is no better than the student alone here ({paper})."
    if distilled > teacher:
        return (f"it ends {(distilled - teacher) * 100:.2f} points above the teacher, more than closing the "
                f"{(teacher - alone) * 100:.2f}-point gap ({paper}).")
    return f"it closes {(distilled - alone) / (teacher - alone):.0%} of the teacher–student gap ({paper})."


def _direction(d: Any) -> str:
    """Whether the paper's direction (distilled beats alone) reproduces, from the paired interval."""
    if not d.significant:
        return "Not distinguishable from 0 over these seeds."
    if d.low > 0:
        return "The paper's direction reproduces."
    return "The paper's direction does not reproduce: distillation is worse here."
