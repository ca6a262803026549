"""Ray as the way out of one machine: a real two-node cluster, a killed worker, an
unreachable address, and teachers that travel with the work instead of a shared disk."""
from __future__ import annotations

import pickle
import shutil
import time

import pytest

from kdbench.results import load_records

ray = pytest.importorskip("ray")

GRID = ["--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke", "--seeds", "2",
        "--quiet", "--threads", "1"]

KILLS_ITS_WORKER_ONCE = '''
import os
import signal
from pathlib import Path

import torch.nn.functional as F
from kdbench import Method, hookimpl

MARK = Path(os.environ["KDBENCH_TEST_MARK"])


class KillsOnce(Method):
    """SIGKILLs the process running it the first time, then trains like student-only."""
    name = "kills-once"
    uses_teacher = False

    def loss(self, student, teacher, labels):
        if not MARK.exists():
            MARK.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"ce": F.cross_entropy(student.logits, labels)}


@hookimpl
def kdbench_methods():
    return [KillsOnce]
'''


def _numbers(out):
    return {(r["pair"], r["method"], r["seed"]): (r["metrics"]["test_acc"], r["losses"]) for r in load_records([out])}


@pytest.fixture(scope="module")
def local_run(grid_out):
    return grid_out(*GRID, name="local")


def test_a_two_node_cluster_gives_the_local_records(local_run, tmp_path, cli_run):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        code, _, err = cli_run("run", *GRID, "--executor", "ray", "--ray-address", cluster.address, "--jobs", "2",
                               "--out", str(tmp_path))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert code == 0, err
    assert _numbers(tmp_path) == _numbers(local_run)
    nodes = {r["host"]["ray_node"] for r in load_records([tmp_path])}
    assert len(nodes) == 2  # one one-CPU actor on each node


def test_a_killed_ray_worker_is_replaced_and_its_cell_run_again(tmp_path, cli_run, monkeypatch):
    plugin = tmp_path / "kills_once.py"
    plugin.write_text(KILLS_ITS_WORKER_ONCE)
    mark = tmp_path / "killed-once"
    monkeypatch.setenv("KDBENCH_TEST_MARK", str(mark))
    try:
        code, _, err = cli_run("run", "--plugin", str(plugin), "--methods", "student-only,kills-once",
                               *GRID[2:], "--executor", "ray", "--out", str(tmp_path / "out"))
    finally:
        ray.shutdown()
    assert mark.exists()  # a worker process really died mid-cell
    records = load_records([tmp_path / "out"])
    assert code == 0, err
    assert sorted((r["method"], r["seed"], r["status"]) for r in records) == [
        ("kills-once", 0, "ok"), ("kills-once", 1, "ok"), ("student-only", 0, "ok"), ("student-only", 1, "ok")]


def test_an_unreachable_cluster_is_a_one_line_error_within_seconds(tmp_path, cli_run):
    started = time.monotonic()
    code, stdout, err = cli_run("run", *GRID, "--executor", "ray", "--ray-address", "127.0.0.1:9",
                                "--out", str(tmp_path / "out"))
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "--ray-address 127.0.0.1:9: nothing answers" in err
    assert time.monotonic() - started < 30


def test_teachers_travel_with_the_work_not_through_a_shared_disk(registry, tmp_path):
    """What a Ray actor receives runs its cells even where the driver's zoo does not exist."""
    from kdbench.plan import Cell, RunConfig
    from kdbench.worker import CellWorker, Task

    zoo = tmp_path / "zoo"
    driver = CellWorker(RunConfig(profile="smoke", progress=False, zoo_root=zoo, out=tmp_path / "out"), registry)
    job = driver.job(Cell("mlp-hinton", "hinton", 0))
    task = Task(job.cell, driver.head(job, driver.costs(job.prepared)))
    shipped = pickle.dumps(driver.portable())
    shutil.rmtree(zoo)  # a node that never saw the driver's disk
    remote = pickle.loads(shipped)
    remote._registry = registry
    record = remote(task)
    assert record["status"] == "ok", record.get("error")
    assert record["teacher_sha256"] == job.teacher.sha256
    assert not (zoo / "teachers").exists() or not any((zoo / "teachers").glob("*/model.safetensors"))


def test_a_pretrained_student_travels_with_the_work_to_a_node_without_it(registry, tmp_path, monkeypatch):
    """A general-distillation artefact made by the driver reaches a worker whose
    KDBENCH_HOME has never seen it: the worker installs it and does not train it again."""
    from kdbench.plan import Cell, RunConfig
    from kdbench.worker import CellWorker, Task

    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "driver"))
    driver = CellWorker(RunConfig(profile="smoke", progress=False, out=tmp_path / "out"), registry)
    job = driver.job(Cell("minilm-tiny4-gd", "student-only", 0))
    task = Task(job.cell, driver.head(job, driver.costs(job.prepared)))
    key = job.prepared.pair.student_card["key"]
    shipped = ray.cloudpickle.dumps(driver.portable())  # as Ray serialises it
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "node"))  # another node's disk
    remote = ray.cloudpickle.loads(shipped)
    remote._registry = registry
    record = remote(task)
    assert record["status"] == "ok", record.get("error")
    assert record["student_init"]["key"] == key and record["student_init"]["reused"] is True
    assert (tmp_path / "node" / "students" / key / "card.json").is_file()


def test_a_killed_driver_leaves_its_records_and_a_rerun_finishes_the_grid(tmp_path):
    """The driver of a Ray run SIGKILLed after its first record: the same command, run
    again, runs only the cells without a record and leaves the others untouched."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kdbench.cli", "run", *GRID, "--seeds", "3", "--budget-steps", "12",
           "--executor", "ray", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline and not any(out.rglob("seed*.json")):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait(timeout=60)
    before = {f: f.read_bytes() for f in out.rglob("seed*.json")}
    assert 1 <= len(before) < 6, (tmp_path / "first.log").read_text(errors="replace")[-2000:]
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{6 - len(before)} cells run, {len(before)} reused" in rerun.stdout
    assert all(f.read_bytes() == data for f, data in before.items())
    assert len(load_records([out])) == 6
