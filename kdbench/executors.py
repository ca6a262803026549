"""Where cells run: in this process, in N forked worker processes, or as Ray tasks.

An executor receives *work* — a callable that turns a task into a record (see
`kdbench.cell.CellWorker`) — and the tasks, and yields records as they finish. It never
sees the runner: the driver prepares every pair once and writes every record itself, so
resume and atomic writes work the same whatever runs the cells.

* `local`, jobs = 1: cells run one after another in this process.
* `local`, jobs = N: N forked workers inherit the prepared work (no reload), each with
  cores / N intra-op threads; a worker that dies fails its cell, never the grid, and a
  driver that dies (even by SIGKILL) takes its workers with it on Linux.
* `ray`: `--jobs` Ray actors, each holding `work.portable()` — the run's settings and
  the prepared teachers (shipped once through Ray's object store, so no shared filesystem
  is needed for them); an actor loads a pair's data once and runs every cell it is
  handed. A cell whose actor dies is retried once on a fresh actor.

A cell's numbers depend on its intra-op thread count (it changes floating-point reduction
order), so `--threads` fixes it for every executor: runs with different `--jobs` and the
same `--threads` give identical records. This module imports torch only when it runs.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from .errors import UsageError

Record = dict[str, Any]


class Work(Protocol):
    """What an executor runs: one task → one record."""

    progress: bool  # per-cell progress bars; executors switch them off in worker processes

    def __call__(self, task: Any) -> Record: ...

    def failed(self, task: Any, error: str) -> Record:
        """The record of a task whose worker never reported back."""

    def portable(self) -> "Work":
        """A copy to ship to another process or machine: settings only, no prepared state."""


@dataclass(frozen=True)
class Dispatch:
    """How many cells run at once, with how many threads each, and where."""

    jobs: int = 1
    threads: int | None = None  # intra-op threads per cell (default: cores / jobs)
    ray_address: str | None = None
    cores: int | None = None  # cores the cells may use (default: os.cpu_count(); see `free_cores`)

    def cell_threads(self, jobs: int | None = None) -> int:
        """`threads`, else the cores shared among `jobs` workers."""
        return self.threads or max(1, (self.cores or os.cpu_count() or 1) // (jobs or self.jobs))


def busy_cores(interval: float = 0.25, stat: str = "/proc/stat") -> int:
    """How many cores other work keeps more than half busy right now (Linux; 0 elsewhere).

    Intra-op threads that share a core with another process wait for it at every
    parallel region, so a run with a thread per core slows far more than the lost core;
    the runner warns, and `--threads` fixes the thread count."""
    def sample() -> list[tuple[int, int]]:
        rows = [line.split() for line in Path(stat).read_text().splitlines() if line.startswith("cpu")][1:]
        return [(sum(map(int, r[1:])), int(r[4]) + int(r[5])) for r in rows]  # (total, idle + iowait)

    try:
        before = sample()
        time.sleep(interval)
        after = sample()
    except (OSError, ValueError, IndexError):
        return 0
    return sum(1 for (t0, i0), (t1, i1) in zip(before, after) if t1 > t0 and 1 - (i1 - i0) / (t1 - t0) > 0.5)


def free_cores() -> tuple[int, int]:
    """(free, busy): the cores other work leaves to this run, and those it keeps busy.

    The default thread count follows the free ones: a thread that shares its core with
    another process makes every other thread wait for it at each parallel region (8 smoke
    cells with one core taken: 4.3× the training seconds at 2 threads, 1.5× at 1; in a Ray
    actor, 50× at 2 threads)."""
    cores = os.cpu_count() or 1
    busy = min(busy_cores(), cores - 1)
    return cores - busy, busy


def _set_threads(n: int) -> int:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to `n` (None: unchanged) inside the block, restored after."""
    before = _set_threads(n) if n else None
    try:
        yield
    finally:
        if before is not None:
            _set_threads(before)


def run_local(work: Work, tasks: Sequence[Any], dispatch: Dispatch) -> Iterator[Record]:
    """Cells one after another in this process, each at the cell thread count."""
    for task in tasks:
        with torch_threads(dispatch.cell_threads(1)):  # the driver's own work keeps every core
            record = work(task)
        yield record


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, `timeout`, a job scheduler) stops a run the way Ctrl-C does: as
    KeyboardInterrupt, so the executors' cleanup stops their workers and every record
    written so far stays. Python's default for SIGTERM exits at once, cleanup skipped."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """Tie a worker's life to the driver's. Only the driver writes records, so a worker
    that outlives it trains on for nobody; a driver killed by a signal runs no cleanup,
    so on Linux the kernel kills the worker (prctl PR_SET_PDEATHSIG; a no-op elsewhere).
    Ctrl-C reaches the whole process group: workers ignore it and the driver stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the driver's handler, inherited by fork
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the driver died before the request took effect
        os._exit(1)


def _worker(work: Work, tasks: Sequence[Any], todo: Any, done: Any, threads: int, parent: int) -> None:
    _die_with(parent)
    _set_threads(threads)
    work.progress = False
    while (i := todo.get()) is not None:
        done.put((i, work(tasks[i])))


def run_forked(work: Work, tasks: Sequence[Any], dispatch: Dispatch) -> Iterator[Record]:
    """Run `tasks` in `dispatch.jobs` forked processes; yield records as they finish."""
    jobs = min(dispatch.jobs, len(tasks))
    if jobs <= 1:
        yield from run_local(work, tasks, dispatch)
        return
    ctx = mp.get_context("fork")
    todo, done = ctx.Queue(), ctx.Queue()
    for i in [*range(len(tasks)), *[None] * jobs]:
        todo.put(i)
    threads = dispatch.cell_threads(jobs)
    procs = [ctx.Process(target=_worker, args=(work, tasks, todo, done, threads, os.getpid()), daemon=True)
             for _ in range(jobs)]
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
            yield work.failed(tasks[i], "worker process died (killed or out of memory)")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


class _CellActor:
    """A Ray actor: one concurrent slot, holding its own copy of the work, so each pair is
    prepared (data loaded, teacher received) once per actor, not once per cell."""

    def __init__(self, work: Work, threads: int) -> None:
        _set_threads(threads)
        self.work = work

    def run(self, task: Any) -> Record:
        return self.work(task)


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, when nothing listens at a `host:port` address
    (Ray itself retries an unreachable cluster for minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and other forms are Ray's to resolve
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: nothing answers at {host or '127.0.0.1'}:{port} ({exc.strerror or exc}); "
                         "start the cluster (`ray start --head`) or give its address") from None


def _start_ray(dispatch: Dispatch) -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'kdbench[ray]'") from None
    if not ray.is_initialized():
        if dispatch.ray_address:
            check_ray_address(dispatch.ray_address)
            ray.init(address=dispatch.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


def run_ray(work: Work, tasks: Sequence[Any], dispatch: Dispatch) -> Iterator[Record]:
    """`dispatch.jobs` Ray actors, each running one cell at a time on the CPUs Ray grants it;
    records come back to the driver as they finish. A cell whose worker process dies is
    run once more on a fresh actor, then recorded `failed` with the cause."""
    ray = _start_ray(dispatch)
    threads = dispatch.cell_threads()
    actor_class = ray.remote(num_cpus=threads, max_restarts=0)(_CellActor)
    shipped = ray.put(work.portable())
    pending = deque(tasks)
    tried: dict[int, int] = {}
    running: dict[Any, tuple[Any, Any]] = {}

    def submit(actor: Any) -> None:
        if pending:
            task = pending.popleft()
            tried[id(task)] = tried.get(id(task), 0) + 1
            running[actor.run.remote(task)] = (actor, task)

    for _ in range(min(dispatch.jobs, len(tasks))):
        submit(actor_class.remote(shipped, threads))
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        actor, task = running.pop(ready[0])
        try:
            yield ray.get(ready[0])
        except ray.exceptions.RayActorError as exc:  # its process died: killed, or out of memory
            ray.kill(actor)
            actor = actor_class.remote(shipped, threads)
            if tried[id(task)] < 2:
                pending.appendleft(task)
            else:
                yield work.failed(task, f"ray worker died twice running this cell: {_first_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - a lost task fails its cell only
            yield work.failed(task, f"ray task failed: {type(exc).__name__}: {_first_line(exc)}")
        submit(actor)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


Executor = Callable[[Work, Sequence[Any], Dispatch], Iterator[Record]]
EXECUTORS: dict[str, Executor] = {
    "local": run_forked,
    "ray": run_ray,
}
