"""Teacher-output cache and parallel executors give the same numbers as the plain run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdbench.results import load_records

ROOT = Path(__file__).resolve().parents[1]

GRID = ["--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke", "--seeds", "2", "--quiet"]


def _accs(out):
    return {(r["pair"], r["method"], r["seed"]): r["metrics"]["test_acc"] for r in load_records([out])}


def _losses(out):
    return {(r["pair"], r["method"], r["seed"]): r["losses"] for r in load_records([out])}


@pytest.fixture(scope="module")
def plain_run(grid_out):
    return grid_out(*GRID, name="plain")


def test_logits_only_methods_use_the_teacher_cache(plain_run):
    modes = {r["method"]: r["train"]["teacher"] for r in load_records([plain_run])}
    assert modes == {"hinton": "cached", "student-only": "none"}


def test_cached_teacher_gives_the_live_run_accuracy(plain_run, tmp_path, cli_run):
    code, _, err = cli_run("run", *GRID, "--methods", "hinton", "--no-teacher-cache", "--out", str(tmp_path))
    assert code == 0, err
    assert {r["train"]["teacher"] for r in load_records([tmp_path])} == {"live"}
    for read in (_accs, _losses):  # same accuracy, and the same loss at every step
        assert read(tmp_path) == {k: v for k, v in read(plain_run).items() if k[1] == "hinton"}


def test_two_jobs_give_identical_accuracies(plain_run, tmp_path, cli_run):
    code, _, err = cli_run("run", *GRID, "--jobs", "2", "--out", str(tmp_path))
    assert code == 0, err
    assert _accs(tmp_path) == _accs(plain_run)


def test_fixed_threads_give_identical_records_whatever_the_jobs(tmp_path, cli_run):
    """Thread count changes reduction order; with --threads fixed, --jobs changes nothing."""
    for jobs in ("1", "2"):
        code, _, err = cli_run("run", *GRID, "--jobs", jobs, "--threads", "1", "--out", str(tmp_path / jobs))
        assert code == 0, err
    assert {r["threads"] for r in load_records([tmp_path / "1"]) + load_records([tmp_path / "2"])} == {1}
    for read in (_accs, _losses):
        assert read(tmp_path / "1") == read(tmp_path / "2")


def test_ray_executor_gives_identical_accuracies(plain_run, tmp_path, cli_run):
    ray = pytest.importorskip("ray")
    try:
        code, _, err = cli_run("run", *GRID, "--executor", "ray", "--out", str(tmp_path))
    finally:
        ray.shutdown()
    assert code == 0, err
    assert _accs(tmp_path) == _accs(plain_run)


def test_jobs_must_be_positive(cli_run, tmp_path):
    code, _, err = cli_run("run", *GRID, "--jobs", "0", "--out", str(tmp_path / "x"))
    assert code == 2 and err.count("\n") == 1 and "--jobs" in err
    assert not (tmp_path / "x").exists()


def test_corrupted_teacher_logits_cache_is_recomputed_with_a_warning(plain_run):
    from kdbench.plugins import load_registry
    from kdbench.plan import RunConfig
    from kdbench.teacher_cache import cache_file, teacher_logits
    from kdbench.worker import CellWorker

    runner = CellWorker(RunConfig(profile="smoke", progress=False), load_registry())
    st = runner.pair("mlp-hinton")
    path = cache_file(runner.zoo, st.teacher, st.splits, "smoke")
    good = teacher_logits(runner.zoo, st.teacher, st.pair, st.splits, "smoke").clone()  # may map the file
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x40  # one bit of the last logit
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="fail their checksum"):
        again = teacher_logits(runner.zoo, st.teacher, st.pair, st.splits, "smoke")
    assert torch.equal(again, good)
    assert torch.equal(teacher_logits(runner.zoo, st.teacher, st.pair, st.splits, "smoke"), good)  # rewritten


def test_the_whole_grid_goes_to_the_executor_at_once(registry, tmp_path, monkeypatch):
    """Every pair is prepared (and its latency measured) before any cell is handed out,
    and all pairs' cells go out together: workers never idle at a pair boundary."""
    from kdbench import executors
    from kdbench.plan import RunConfig, plan
    from kdbench.runner import Runner

    calls, events = [], []
    runner = Runner(registry, RunConfig(profile="smoke", progress=False, out=tmp_path))
    costs = runner.worker.costs
    monkeypatch.setattr(runner.worker, "costs", lambda *a: events.append("costs") or costs(*a))

    def spy(work, tasks, dispatch):
        events.append("dispatch")
        calls.append([(t.cell.pair, t.cell.method) for t in tasks])
        yield from executors.run_local(work, tasks, dispatch)

    monkeypatch.setitem(executors.EXECUTORS, "local", spy)
    cells = plan(registry, ["student-only"], ["mlp-hinton", "resnet-cnn"], 1, profile="smoke")
    summary = runner.run(cells)
    assert calls == [[("mlp-hinton", "student-only"), ("resnet-cnn", "student-only")]]
    assert events == ["costs", "costs", "dispatch"]
    assert len(summary.written) == 2


DIES = '''
import os
import torch.nn.functional as F
from kdbench import Method, hookimpl


class Dies(Method):
    """Kills its worker process mid-cell (as the OOM killer would)."""
    name = "dies"

    def loss(self, student, teacher, labels):
        os._exit(3)


@hookimpl
def kdbench_methods():
    return [Dies]
'''

#: What a record says about how and where it ran, whatever became of the cell.
PROVENANCE = {"pair", "method", "seed", "profile", "budget", "hparams", "teacher_sha256", "scenario", "cell_id",
              "command", "git_sha", "versions", "created", "dataset", "device", "precision", "channels_last",
              "threads", "host", "teacher_key", "params", "flops", "latency_ms", "latency_batch", "throughput",
              "speedup_bs1", "speedup_bsN", "size_bytes", "metrics", "status"}


def test_a_dead_worker_leaves_a_record_with_the_same_provenance(tmp_path, cli_run):
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES)
    out = tmp_path / "out"
    code, _, err = cli_run("run", "--plugin", str(plugin), "--methods", "student-only,dies", "--pairs", "mlp-hinton",
                           "--profile", "smoke", "--jobs", "2", "--quiet", "--out", str(out))
    assert code == 1 and "FAILED mlp-hinton/dies/seed0: worker process died" in err
    records = {r["method"]: r for r in load_records([out])}
    ok, dead = records["student-only"], records["dies"]
    assert ok["status"] == "ok" and dead["status"] == "failed"
    assert PROVENANCE <= set(ok) and PROVENANCE <= set(dead)
    assert dead["params"]["student"] == ok["params"]["student"] and dead["host"]["cpu"] == ok["host"]["cpu"]


def test_busy_cores_counts_cores_that_other_work_keeps_busy(tmp_path, monkeypatch):
    """From two /proc/stat samples: cpu0 98% busy, cpu1 10% busy → one busy core."""
    from kdbench import executors

    stat = tmp_path / "stat"
    samples = iter([
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\n",
        "cpu  0 0 0 0 0 0 0 0\ncpu0 198 0 0 102 0 0 0 0\ncpu1 110 0 0 190 0 0 0 0\n",
    ])
    monkeypatch.setattr(executors.Path, "read_text", lambda self, *a, **k: next(samples))
    assert executors.busy_cores(interval=0, stat=str(stat)) == 1


@pytest.mark.parametrize("threads,address,expected", [(None, None, 1), (2, None, 2), (None, "10.0.0.1:6379", 2)])
def test_default_threads_follow_the_cores_other_work_leaves_free(registry, tmp_path, monkeypatch, threads, address,
                                                                 expected):
    """One of two cores busy: a default run's cells get one thread each, and the run says
    so; --threads, or a Ray cluster's address (its nodes are not this machine), keep theirs."""
    from kdbench import runner as runner_module
    from kdbench.plan import RunConfig
    from kdbench.runner import Runner

    monkeypatch.setattr(runner_module, "free_cores", lambda: (1, 1))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    said: list[str] = []
    config = RunConfig(profile="smoke", progress=False, out=tmp_path, threads=threads, ray_address=address)
    dispatch, note = Runner(registry, config, notify=said.append)._dispatch()
    assert dispatch.cell_threads() == expected
    assert bool(note) == (threads is None and address is None)
    assert not note or "1 of 2 cores are busy" in note and "--threads" in note


def test_costs_are_measured_at_the_cells_thread_count(registry, tmp_path, monkeypatch):
    """Latency measured with more threads than the cells get (and than the free cores)
    is a measure of waiting: the driver measures at the cells' count, then restores its own."""
    import torch

    from kdbench import worker as worker_module
    from kdbench.plan import Cell, RunConfig
    from kdbench.runner import Runner

    from tqdm import tqdm

    from kdbench.runner import Summary

    seen: list[int] = []
    measure = worker_module.pair_costs
    monkeypatch.setattr(worker_module, "pair_costs",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or measure(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = RunConfig(profile="smoke", progress=False, out=tmp_path, threads=1)
        Runner(registry, config).pair_tasks("mlp-hinton", [Cell("mlp-hinton", "student-only", 0)], Summary(),
                                            tqdm(disable=True), threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


SLOW = '''
import os
import time
from pathlib import Path

import torch.nn.functional as F
from kdbench import Method, hookimpl


class Slow(Method):
    """Cross-entropy at 0.1 s a step; leaves its worker's pid in $SLOW_PIDS (a test method)."""
    name = "slow"

    def loss(self, student, teacher, labels):
        Path(os.environ["SLOW_PIDS"], str(os.getpid())).touch()
        time.sleep(0.1)
        return {"ce": F.cross_entropy(student.logits, labels)}


@hookimpl
def kdbench_methods():
    return [Slow]
'''


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie may never be reaped here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_driver_leaves_no_worker_running(tmp_path, sig):
    """`kill` (SIGTERM) stops a --jobs grid like Ctrl-C: exit 130, workers stopped. Even a
    SIGKILL'd driver, which runs no cleanup, leaves no worker training for nobody."""
    plugin, pids, out = tmp_path / "slow.py", tmp_path / "pids", tmp_path / "out"
    plugin.write_text(SLOW)
    pids.mkdir()
    cmd = [sys.executable, "-m", "kdbench.cli", "run", "--plugin", str(plugin), "--methods", "slow",
           "--pairs", "mlp-hinton", "--profile", "smoke", "--seeds", "2", "--jobs", "2", "--threads", "1",
           "--budget-steps", "3000", "--quiet", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SLOW_PIDS": str(pids)}
    log = tmp_path / "stderr.log"  # a file, not a pipe: an orphaned worker would hold a pipe open
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while len(list(pids.iterdir())) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, log.read_text()
        proc.send_signal(sig)
        proc.wait(timeout=60)
        err = log.read_text()
        deadline = time.monotonic() + 20
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "a worker outlived its driver"
    finally:
        proc.kill()
        for w in (int(p.name) for p in pids.iterdir()):
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "interrupted; completed cells are kept" in err, err
        assert "Traceback" not in err, err
