"""Run kdbench cells with the representation check on for every method, and print it.

Records keep `phases` and `phase_checks` for methods that declare phases (tinybert);
this script also runs the check for methods that do not (student-only, to compare
starting points): it wraps the worker's `run_cell` and `cell.train_student` and prints,
per cell, the validation accuracy, the phases, the check at the start and at every
phase boundary, and the student's pre-training card. Arguments are `kdbench run`'s.

    KDBENCH_OFFLINE=1 .venv/bin/python bench/tinybert_check.py --pairs minilm-tiny4,minilm-tiny4-gd \
        --methods student-only,tinybert --profile standard --out runs/tinybert-check
"""
from __future__ import annotations

import json
import sys
from typing import Any

import kdbench.cell as cell
import kdbench.worker as worker
from kdbench.cli import main
from kdbench.train import representation_check

#: Validation examples behind the check (the first ones: a fixed batch for every cell).
CHECK_EXAMPLES = 64
current: dict[str, Any] = {}

original_run_cell = worker.run_cell
original_train_student = cell.train_student


def run_cell(job, record, accel, **kwargs):
    pair, splits = job.prepared.pair, job.prepared.splits
    current.update(job=job, val=splits.val.take(CHECK_EXAMPLES), teacher=job.teacher.model, taps=pair.taps)
    record = original_run_cell(job, record, accel, **kwargs)
    card = getattr(pair, "student_card", None)
    print(json.dumps({"pair": job.cell.pair, "method": job.cell.method, "seed": job.cell.seed,
                      "val_acc": record.metrics.get("val_acc"), "phases": current.get("phases"),
                      "phase_checks": current.get("phase_checks"),
                      "student_init": {k: card[k] for k in ("key", "sha256", "seconds", "steps", "reused")}
                      if card else None}), file=sys.stderr)
    return record


def train_student(student, method, data, budget, schedule, forward, **kwargs):
    kwargs["phase_check"] = representation_check(student, current["teacher"], forward, current["val"],
                                                  current["taps"])  # for every method, not only phased ones
    result = original_train_student(student, method, data, budget, schedule, forward, **kwargs)
    current.update(phases=result.phases, phase_checks=result.phase_checks)
    return result


if __name__ == "__main__":
    worker.run_cell = run_cell
    cell.train_student = train_student
    sys.exit(main(["run", *sys.argv[1:]]))
