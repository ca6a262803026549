"""Where cells run: in this process, in N forked worker processes, or as Ray tasks.

The driver (the `Runner`) prepares every pair once — data, teacher, costs, cached
teacher logits — then hands the whole grid's cells to an executor and writes every
record itself, so resume and atomic writes work the same whatever runs the cells.

* `local`, jobs = 1: cells run one after another in this process.
* `local`, jobs = N: N forked workers inherit the prepared pairs (no reload), each with
  cores / N intra-op threads; a worker that dies fails its cell, never the grid.
* `ray`: each cell is a Ray task that rebuilds the runner from the run's config and
  loads data and teacher from the zoo folder (which must be shared with the workers).

A cell's numbers depend on its intra-op thread count (it changes floating-point reduction
order), so `--threads` fixes it for every executor: runs with different `--jobs` and the
same `--threads` give identical records.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .runner import Cell, RunConfig, Runner

Task = tuple["Cell", dict[str, Any], dict[str, Any]]  # cell, identity, costs


def cell_threads(config: "RunConfig", jobs: int) -> int:
    """Intra-op threads of one cell: `--threads`, else the cores shared among `jobs` workers."""
    return config.threads or max(1, (os.cpu_count() or 1) // jobs)


def run_local(runner: "Runner", tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    threads, before = cell_threads(runner.config, 1), torch.get_num_threads()
    for cell, identity, costs in tasks:
        torch.set_num_threads(threads)
        try:
            record = runner.execute(cell, identity, costs)
        finally:
            torch.set_num_threads(before)  # the driver's own work keeps every core
        yield record


def _worker(runner: "Runner", tasks: Sequence[Task], todo: Any, done: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    runner.config.progress = False
    while True:
        i = todo.get()
        if i is None:
            return
        cell, identity, costs = tasks[i]
        done.put((i, runner.execute(cell, identity, costs)))


def run_forked(runner: "Runner", tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    """Run `tasks` in `runner.config.jobs` forked processes; yield records as they finish."""
    jobs = min(runner.config.jobs, len(tasks))
    if jobs <= 1:
        yield from run_local(runner, tasks)
        return
    ctx = mp.get_context("fork")
    todo, done = ctx.Queue(), ctx.Queue()
    for i in range(len(tasks)):
        todo.put(i)
    for _ in range(jobs):
        todo.put(None)
    threads = cell_threads(runner.config, jobs)
    procs = [ctx.Process(target=_worker, args=(runner, tasks, todo, done, threads), daemon=True) for _ in range(jobs)]
    for p in procs:
        p.start()
    pending = set(range(len(tasks)))
    try:
        while pending:
            try:
                i, record = done.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            pending.discard(i)
            yield record
        for i in sorted(pending):  # every worker died before finishing these
            yield runner.failed_record(*tasks[i], error="worker process died (killed or out of memory)")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


def _ray_cell(config: Any, cell: "Cell", identity: dict[str, Any], costs: dict[str, Any]) -> dict[str, Any]:
    from .plugins import load_registry
    from .runner import Runner

    config.progress = False
    torch.set_num_threads(cell_threads(config, config.jobs))
    return Runner(load_registry(config.plugins), config).execute(cell, identity, costs)


def run_ray(runner: "Runner", tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    """Each cell a Ray task; records come back to the driver as they finish."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'kdbench[ray]'") from None
    if not ray.is_initialized():
        address = runner.config.ray_address
        kwargs: dict[str, Any] = {"address": address} if address else {
            "num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
    remote = ray.remote(num_cpus=cell_threads(runner.config, runner.config.jobs))(_ray_cell)
    config = dataclasses.replace(runner.config, zoo_root=runner.zoo.root.parent)  # workers read this zoo
    futures = {remote.remote(config, *task): task for task in tasks}
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        task = futures.pop(ready[0])
        try:
            yield ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - a lost task fails its cell only
            yield runner.failed_record(*task, error=f"ray task failed: {type(exc).__name__}: {exc}")


EXECUTORS: dict[str, Callable[["Runner", Sequence[Task]], Iterator[dict[str, Any]]]] = {
    "local": run_forked,
    "ray": run_ray,
}
