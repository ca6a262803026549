"""Speed benchmarks of kdbench itself, each a ratio of two things timed in one run,
each failing when its target is missed.

(a) framework overhead: kdbench's training loop vs a bare hand-written PyTorch loop,
    same models, batch and loss — target ≤ 1.05;
(b) teacher cost: `hinton` with cached teacher logits vs `student-only` — target ≤ 1.15
    (live teacher reported beside it);
(c) the grid: `--jobs 2` vs `--jobs 1` wall time, both at `--threads 1` so their records
    must be identical — target ≤ 0.7 at quick size, < 1 at smoke size (where process
    start and pair preparation, which are serial, dominate);
(d) why (c) is bounded on few cores: the same cells on all cores' threads vs one thread —
    all cores must beat one thread;
(h) feature and hidden-state methods with their teacher taps cached vs `student-only` —
    target ≤ 1.3;
(i) a text student's step on length-grouped batches vs plain shuffled ones —
    target ≤ 0.75.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdbench import Budget
from kdbench.cell import init_student
from kdbench.plan import RunConfig, by_pair, plan
from kdbench.plugins import load_registry
from kdbench.results import load_records
from kdbench.runner import Runner, Summary
from kdbench.teacher_cache import teacher_logits
from kdbench.train import train
from kdbench.worker import CellWorker

STEPS, ROUNDS = 20, 5
TARGETS = {"overhead": 1.05, "cache": 1.15, "jobs-quick": 0.7, "jobs-smoke": 1.0, "taps": 1.3, "grouped": 0.75}


def _state(pair_name: str, profile: str = "smoke"):
    registry = load_registry()
    if pair_name not in registry.pairs:
        pytest.skip(f"pair {pair_name} not registered")
    worker = CellWorker(RunConfig(profile=profile, progress=False), registry)
    st = worker.pair(pair_name)
    student = init_student(st.pair, st.teacher.model, st.splits.num_classes, 0, worker.accel.model)
    return registry, worker, st, student


def _interleaved(fns: dict[str, callable]) -> dict[str, float]:
    """Median seconds per call of each function, rounds interleaved so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _bare_loop(student, pair, data, schedule, seed):
    """What a researcher writes by hand: forward, cross-entropy, backward, AdamW step."""
    opt = torch.optim.AdamW(student.parameters(), lr=schedule.lr)
    g = torch.Generator().manual_seed(seed)
    student.train()
    for _ in range(STEPS):
        idx = torch.randint(len(data), (schedule.batch_size,), generator=g)
        batch = data.index(idx)
        logits = pair.forward(student, batch.x, frozenset({"logits"})).logits
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("pair_name", ["resnet-cnn", "minilm-tiny4"])
def test_framework_overhead(benchmark, report_ratio, pair_name):
    registry, _, st, student = _state(pair_name)
    schedule = st.pair.schedule("smoke")
    method = registry.method("student-only").obj()

    def kdbench_loop():
        train(student, method, st.splits.train, Budget(steps=STEPS), schedule, st.pair.forward, seed=0)

    med = _interleaved({"kdbench": kdbench_loop, "bare": lambda: _bare_loop(student, st.pair, st.splits.train, schedule, 0)})
    ratio = med["kdbench"] / med["bare"]
    benchmark.extra_info.update(ratio=ratio, kdbench_step_ms=med["kdbench"] / STEPS * 1e3,
                                bare_step_ms=med["bare"] / STEPS * 1e3)
    benchmark.pedantic(kdbench_loop, rounds=1, iterations=1)
    report_ratio(f"(a) {pair_name}: kdbench step / bare-loop step = {ratio:.3f} "
                 f"({med['kdbench'] / STEPS * 1e3:.1f} ms vs {med['bare'] / STEPS * 1e3:.1f} ms, "
                 f"batch {schedule.batch_size}, {STEPS} steps, median of {ROUNDS}); target <= {TARGETS['overhead']}")
    assert ratio <= TARGETS["overhead"]


def test_teacher_cache(benchmark, report_ratio, pair_name="resnet-cnn"):
    registry, worker, st, student = _state(pair_name, profile="quick")
    schedule = st.pair.schedule("quick")
    cached = teacher_logits(worker.zoo, st.teacher, st.pair, st.splits, "quick")
    hinton, alone = registry.method("hinton").obj(), registry.method("student-only").obj()

    def run(method, **kw):
        return lambda: train(student, method, st.splits.train, Budget(steps=STEPS), schedule, st.pair.forward,
                             seed=0, **kw)

    med = _interleaved({
        "student-only": run(alone),
        "hinton-cached": run(hinton, teacher_logits=cached),
        "hinton-live": run(hinton, teacher=st.teacher.model),
    })
    benchmark.extra_info.update({k: v / STEPS * 1e3 for k, v in med.items()})
    benchmark.pedantic(run(hinton, teacher_logits=cached), rounds=1, iterations=1)
    ratio = med["hinton-cached"] / med["student-only"]
    report_ratio(f"(b) {pair_name} (quick, batch {schedule.batch_size}): hinton cached / student-only = "
                 f"{ratio:.3f} (target <= {TARGETS['cache']}); hinton live / student-only = "
                 f"{med['hinton-live'] / med['student-only']:.3f}")
    assert ratio <= TARGETS["cache"]


@pytest.mark.parametrize("profile, rounds", [("smoke", 3), ("quick", 1)])
def test_parallel_grid(benchmark, report_ratio, tmp_path, profile, rounds):
    """8 cells; at smoke size process start and pair preparation (serial) dominate, at quick the cells do.
    Both runs at one thread per cell, so they compute the same numbers."""
    def command(methods: str, seeds: int) -> list[str]:
        return [sys.executable, "-m", "kdbench.cli", "run", "--methods", methods, "--pairs", "mlp-hinton,resnet-cnn",
                "--profile", profile, "--seeds", str(seeds), "--quiet", "--threads", "1"]

    base = command("student-only,hinton", 2)
    warm = command("student-only", 1)  # trains and caches the teachers
    subprocess.run(warm + ["--out", str(tmp_path / "warm")], check=True, capture_output=True)

    def grid(jobs: int, out: Path) -> float:
        t0 = time.perf_counter()
        subprocess.run(base + ["--jobs", str(jobs), "--out", str(out)], check=True, capture_output=True)
        return time.perf_counter() - t0

    walls: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        walls[1].append(grid(1, tmp_path / f"j1-{r}"))
        walls[2].append(benchmark.pedantic(grid, args=(2, tmp_path / f"j2-{r}"), rounds=1, iterations=1)
                        if r == 0 else grid(2, tmp_path / f"j2-{r}"))
    med = {j: statistics.median(v) for j, v in walls.items()}
    numbers = [{(x["pair"], x["method"], x["seed"]): (x["metrics"]["test_acc"], x["losses"])
                for x in load_records([tmp_path / f"j{j}-0"])} for j in (1, 2)]
    ratio, target = med[2] / med[1], TARGETS[f"jobs-{profile}"]
    benchmark.extra_info.update(jobs1_s=med[1], jobs2_s=med[2], ratio=ratio, identical=numbers[0] == numbers[1])
    report_ratio(f"(c) {profile} grid of 8 cells at --threads 1: --jobs 2 / --jobs 1 wall time = {ratio:.3f} "
                 f"({med[2]:.1f} s vs {med[1]:.1f} s, median of {rounds} run(s), process start included; "
                 f"target <= {target}); identical records: {numbers[0] == numbers[1]}")
    assert len(numbers[0]) == 8 and numbers[0] == numbers[1]
    assert ratio <= target


def test_thread_scaling(benchmark, report_ratio, tmp_path):
    """The bench grid's 8 cells in one process, on all cores' threads and on one thread,
    interleaved. N one-thread workers can at best divide the one-thread time by N, so on
    N cores `--jobs N` spends at least t(1 thread) / (N · t(N threads)) of `--jobs 1`'s
    cell time: a floor from intra-op scaling alone, before any serial work."""
    from tqdm import tqdm

    registry = load_registry()
    runner = Runner(registry, RunConfig(profile="smoke", progress=False, out=tmp_path))
    cells = plan(registry, ["student-only", "hinton"], ["mlp-hinton", "resnet-cnn"], 2, profile="smoke")
    tasks = [task for name, pair_cells in by_pair(cells).items()
             for task in runner.pair_tasks(name, pair_cells, Summary(), tqdm(disable=True))]
    cores = torch.get_num_threads()

    def on(threads: int):
        def run_cells():
            torch.set_num_threads(threads)
            try:
                return [runner.worker(task)["metrics"]["test_acc"] for task in tasks]
            finally:
                torch.set_num_threads(cores)
        return run_cells

    accs = {n: on(n)() for n in (cores, 1)}
    med = _interleaved({cores: on(cores), 1: on(1)})
    scaling = med[1] / med[cores]
    floor = scaling / cores
    benchmark.extra_info.update(all_threads_s=med[cores], one_thread_s=med[1], scaling=scaling, floor=floor)
    benchmark.pedantic(on(cores), rounds=1, iterations=1)
    report_ratio(f"(d) {len(tasks)} smoke cells: 1 thread / {cores} threads = {scaling:.2f} "
                 f"({med[1]:.1f} s vs {med[cores]:.1f} s, median of {ROUNDS}); so --jobs {cores} / --jobs 1 "
                 f"cell time >= {floor:.2f}; identical accuracies: {accs[cores] == accs[1]}")
    assert cores == 1 or scaling > 1.0  # intra-op threads must pay, or --threads defaults are wrong


@pytest.mark.parametrize("pair_name, method_name", [("resnet-cnn", "fitnet"), ("resnet-cnn", "ofa"),
                                                    ("minilm-tiny4", "distilbert"), ("minilm-tiny4", "tinybert")])
def test_tap_cache(benchmark, report_ratio, pair_name, method_name):
    """(h) A feature or hidden-state method's step with its teacher taps cached / `student-only`'s
    step, on its pair at quick size — target ≤ 1.3 (the live teacher reported beside it)."""
    from kdbench.cell import student_adapters, train_student
    from kdbench.plan import Cell

    registry, worker, st, student = _state(pair_name, profile="quick")
    job = worker.job(Cell(pair_name, method_name, 0))
    cached = worker.train_outputs(job)
    assert cached is not None, "the taps did not fit the cache"
    method, alone = job.method, registry.method("student-only").obj()
    adapters = student_adapters(student, method, st.splits.train, job.schedule, st.pair.forward, st.teacher.model, 0,
                                worker.accel.model)

    def run(m, **kw):
        return lambda: train_student(student, m, st.splits.train, Budget(steps=STEPS), job.schedule, st.pair.forward,
                                     seed=0, teacher=st.teacher.model, **kw)

    med = _interleaved({"student-only": run(alone, adapters=None),
                        "cached": run(method, adapters=adapters, teacher_cached=cached),
                        "live": run(method, adapters=adapters)})
    benchmark.pedantic(run(method, adapters=adapters, teacher_cached=cached), rounds=1, iterations=1)
    ratio = med["cached"] / med["student-only"]
    report_ratio(f"(h) {method_name} on {pair_name} (quick): step with cached taps / student-only = {ratio:.3f} "
                 f"(target <= {TARGETS['taps']}); live teacher / student-only = "
                 f"{med['live'] / med['student-only']:.3f}")
    assert ratio <= TARGETS["taps"]


def test_length_grouped_batches(benchmark, report_ratio, pair_name="minilm-distil3"):
    """(i) `student-only`'s step on `pair_name` at quick size (its standard sequence length and
    batch) with batches grouped by length / with plain shuffled batches — target ≤ 0.75. Both
    trim each batch to its longest example; grouping leaves less padding to compute on."""
    import dataclasses

    registry, _, st, student = _state(pair_name, profile="quick")
    schedule = st.pair.schedule("quick")
    extra = {k: v for k, v in schedule.extra.items() if k != "group_by_length"}
    plain = dataclasses.replace(schedule, extra=extra)
    grouped = dataclasses.replace(schedule, extra={**extra, "group_by_length": 50})
    alone = registry.method("student-only").obj()

    def run(s):
        return lambda: train(student, alone, st.splits.train, Budget(steps=STEPS), s, st.pair.forward, seed=0)

    med = _interleaved({"plain": run(plain), "grouped": run(grouped)})
    benchmark.pedantic(run(grouped), rounds=1, iterations=1)
    ratio = med["grouped"] / med["plain"]
    report_ratio(f"(i) student-only on {pair_name} (quick: batch {schedule.batch_size}, max_len "
                 f"{schedule.extra['max_len']}): grouped-by-length step / plain step = {ratio:.3f} "
                 f"({med['grouped'] / STEPS * 1e3:.0f} ms vs {med['plain'] / STEPS * 1e3:.0f} ms); "
                 f"target <= {TARGETS['grouped']}")
    assert ratio <= TARGETS["grouped"]
