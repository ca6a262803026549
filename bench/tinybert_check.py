"""Run kdbench cells with the per-phase representation check on, and print it.

Until the runner passes `phase_check` to `train` and copies `phases` / `phase_checks`
into the record (see `kdbench.train.TrainResult`), this script does both from outside:
it wraps `Runner.run_cell` and `train`, then prints each cell's validation accuracy,
its phases and the check at every phase boundary. Arguments are `kdbench run`'s.

    KDBENCH_OFFLINE=1 .venv/bin/python bench/tinybert_check.py --pairs minilm-tiny4,minilm-tiny4-gd \
        --methods student-only,tinybert --profile quick --out runs/tinybert-check
"""
from __future__ import annotations

import json
import sys
from typing import Any

import kdbench.runner as runner
from kdbench.cli import main
from kdbench.train import representation_check

#: Validation examples behind the check (the first ones: a fixed batch for every cell).
CHECK_EXAMPLES = 64
current: dict[str, Any] = {}
extra: dict[tuple[str, str, int], dict[str, Any]] = {}

original_run_cell = runner.Runner.run_cell
original_train = runner.train


def run_cell(self, cell, pair, splits, teacher, *args, **kwargs):
    current.update(cell=cell, val=splits.val.take(CHECK_EXAMPLES), teacher=teacher.model, taps=pair.taps)
    record = original_run_cell(self, cell, pair, splits, teacher, *args, **kwargs)
    record.update(extra.get((cell.pair, cell.method, cell.seed), {}))
    student_card = getattr(pair, "student_card", None)
    if student_card:
        record["student_init"] = {k: student_card[k] for k in ("key", "sha256", "seconds", "steps", "reused")}
    acc = record.get("metrics", {}).get("val_acc")
    print(json.dumps({"pair": cell.pair, "method": cell.method, "seed": cell.seed, "val_acc": acc,
                      "phases": record.get("phases"), "phase_checks": record.get("phase_checks"),
                      "student_init": record.get("student_init")}), file=sys.stderr)
    return record


def train(student, method, data, budget, schedule, forward, **kwargs):
    check = representation_check(student, current["teacher"], forward, current["val"], current["taps"])
    result = original_train(student, method, data, budget, schedule, forward, phase_check=check, **kwargs)
    cell = current["cell"]
    extra[(cell.pair, cell.method, cell.seed)] = {"phases": result.phases, "phase_checks": result.phase_checks}
    return result


if __name__ == "__main__":
    runner.Runner.run_cell = run_cell
    runner.train = train
    sys.exit(main(["run", *sys.argv[1:]]))
