"""Where one process spends the bench's smoke grid (8 cells): imports, data and teachers,
costs, cells; then the resnet-cnn student's batch-1 latency in fp32 and under bf16
autocast, side by side, twice. The README's serial-share and bf16-on-CPU figures come
from this script:

    KDBENCH_OFFLINE=1 .venv/bin/python bench/grid_phases.py

Teachers are trained when the zoo lacks them; run it once to warm the zoo first.
"""
from __future__ import annotations

import tempfile
import time

started = time.perf_counter()
import torch  # noqa: E402

from kdbench.accel import Accel  # noqa: E402
from kdbench.measure import latency_ms  # noqa: E402
from kdbench.plugins import load_registry  # noqa: E402
from kdbench.cell import init_student  # noqa: E402
from kdbench.plan import RunConfig, plan  # noqa: E402
from kdbench.worker import CellWorker, Task  # noqa: E402

PAIRS = ("mlp-hinton", "resnet-cnn")


def main() -> None:
    registry = load_registry()
    phases = {"imports": time.perf_counter() - started, "data and teachers": 0.0, "costs": 0.0, "cells": 0.0}
    worker = CellWorker(RunConfig(profile="smoke", progress=False, out=tempfile.mkdtemp()), registry)
    cells = plan(registry, ["student-only", "hinton"], list(PAIRS), 2, profile="smoke")
    for name in PAIRS:
        t0 = time.perf_counter()
        st = worker.pair(name)
        t1 = time.perf_counter()
        costs = worker.costs(st)
        t2 = time.perf_counter()
        for cell in (c for c in cells if c.pair == name):
            worker(Task(cell, worker.head(worker.job(cell), costs)))
        phases["data and teachers"] += t1 - t0
        phases["costs"] += t2 - t1
        phases["cells"] += time.perf_counter() - t2
    total = sum(phases.values())
    print(", ".join(f"{k} {v:.1f} s" for k, v in phases.items()), f"(serial share {1 - phases['cells'] / total:.0%})")

    st = worker.pair("resnet-cnn")
    student = init_student(st.pair, st.teacher.model, st.splits.num_classes, 0, worker.accel.model)
    x = st.splits.test.take(1).x
    cpu = torch.device("cpu")
    for round_ in (1, 2):
        for accel in (Accel(cpu), Accel(cpu, bf16=True)):
            ms = latency_ms(student, x, 0.5, call=accel.call)["median"]
            print(f"round {round_}: resnet-cnn student, batch 1, {accel.precision}: {ms:.2f} ms")


if __name__ == "__main__":
    main()
