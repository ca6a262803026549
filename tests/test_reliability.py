"""Issue 7: nothing computed is lost, nothing half-written is taken for a result.

A grid killed with SIGKILL resumes without recomputing finished cells; a method that
goes NaN fails its own cell only; a corrupt teacher checkpoint is caught by its sha256;
torn or malformed records are named and skipped; temporary files never outlive a run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdbench.fsutil import (
    TMP_PREFIX,
    atomic_path,
    atomic_write_text,
    clean_stale_tmp,
    sha256_file,
)
from kdbench.results import IDENTITY_KEYS, cell_id, load_records, read_record

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--pairs", "mlp-hinton", "--profile", "smoke", "--quiet"]

NAN_METHOD = '''
import torch.nn.functional as F
from kdbench import Method, hookimpl

class NanAtStep(Method):
    """Cross-entropy plus a logit-matching term that turns NaN at step `at` (a test method)."""
    name = "nan-at-step"
    defaults = {"at": 3}

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.calls = 0

    def loss(self, student, teacher, labels):
        step, self.calls = self.calls, self.calls + 1
        match = F.mse_loss(student.logits, teacher.logits)
        if step == self.hp.at:
            match = match * float("nan")
        return {"ce": F.cross_entropy(student.logits, labels), "match": match}

@hookimpl
def kdbench_methods():
    return [NanAtStep]
'''


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared by several test runs: one torch thread avoids thrashing (6× here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tmp_files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(f"{TMP_PREFIX}*")]


def _fingerprint(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def _records_by_cell(out: Path) -> dict[tuple[str, int], list[Path]]:
    cells: dict[tuple[str, int], list[Path]] = {}
    for f in out.rglob("*.json"):
        m = re.fullmatch(r"seed(\d+)-[0-9a-f]{12}\.json", f.name)
        assert m, f"unexpected file {f}"
        cells.setdefault((f.parent.name, int(m.group(1))), []).append(f)
    return cells


# -- resume after SIGKILL ------------------------------------------------------------

def test_sigkill_mid_grid_then_rerun_resumes_without_recomputing(tmp_path):
    """6 cells in a subprocess, killed after the first record; the same command finishes
    the grid, leaves the finished records untouched and no temporary files anywhere."""
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    home = Path(os.environ["KDBENCH_HOME"])
    cmd = [sys.executable, "-m", "kdbench.cli", "run", "--methods", "student-only,hinton", *SMOKE,
           "--seeds", "3", "--budget-steps", "12", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and any(out.rglob("seed*.json")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    log_text = (tmp_path / "first.log").read_text(errors="replace")
    assert proc.returncode == -signal.SIGKILL, log_text
    before = {f: _fingerprint(f) for f in out.rglob("seed*.json")}
    assert 1 <= len(before) < 6, "the kill must land mid-grid"
    assert all(read_record(f)["status"] == "ok" for f in before)

    rerun = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{6 - len(before)} cells run, {len(before)} reused" in rerun.stdout

    cells = _records_by_cell(out)
    assert sorted(cells) == [(m, s) for m in ("hinton", "student-only") for s in range(3)]
    for cell, files in cells.items():
        assert len(files) == 1, (cell, files)
        assert read_record(files[0])["status"] == "ok"
    for f, fingerprint in before.items():
        assert _fingerprint(f) == fingerprint, f"{f} was recomputed"
    assert _tmp_files(out, home) == []
    assert list(cwd.iterdir()) == [], "a run wrote outside --out and the zoo"


# -- atomic writes and temporary files -------------------------------------------------

def test_atomic_write_failing_midway_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_text(target, '{"old": true}\n')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": ')  # half a record, then the writer dies
            raise RuntimeError("killed")
    assert target.read_text() == '{"old": true}\n'
    assert _tmp_files(tmp_path) == []


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_text(target, "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    folder = tmp_path / "out" / "mlp-hinton" / "hinton"
    folder.mkdir(parents=True)
    stale = folder / f"{TMP_PREFIX}{dead_pid}-abc123.json"
    live = folder / f"{TMP_PREFIX}{os.getpid()}-def456.json"
    unknown_new = folder / f"{TMP_PREFIX}oldformat.json"
    unknown_old = folder / f"{TMP_PREFIX}ancient.json"
    for f in (stale, live, unknown_new, unknown_old):
        f.write_text('{"half": ')
    os.utime(unknown_old, (time.time() - 7200, time.time() - 7200))
    removed = clean_stale_tmp(tmp_path / "out")
    assert sorted(removed) == sorted([stale, unknown_old])
    assert live.exists() and unknown_new.exists()


def test_run_removes_stale_temp_files_in_out_and_zoo(tmp_path, registry):
    """What a SIGKILL mid-write leaves behind is cleaned by the next run, before training."""
    from kdbench.plan import RunConfig
    from kdbench.runner import Runner

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    out, zoo = tmp_path / "out", tmp_path / "zoo"
    left = [out / "p" / "m" / f"{TMP_PREFIX}{int(dead.stdout)}-x.json",
            zoo / "teachers" / "t-1" / f"{TMP_PREFIX}{int(dead.stdout)}-y.safetensors"]
    for f in left:
        f.parent.mkdir(parents=True)
        f.write_bytes(b"partial")
    Runner(registry, RunConfig(profile="smoke", out=out, zoo_root=zoo, progress=False)).prepare()
    assert _tmp_files(out, zoo) == []


def test_readers_never_see_temp_files_as_records(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / f"{TMP_PREFIX}123-abc.json").write_text('{"pair": ')
    assert load_records([tmp_path]) == []


# -- record identity -------------------------------------------------------------------

IDENTITY = {
    "pair": "mlp-hinton", "method": "hinton", "seed": 0, "profile": "smoke",
    "budget": {"mode": "steps", "steps": 30, "seconds": None},
    "hparams": {"temperature": 4.0, "alpha": 0.5}, "teacher_sha256": "a" * 64,
    "scenario": "full", "student": "c" * 12,
}


@pytest.mark.parametrize("key,value", [
    ("pair", "resnet-cnn"), ("method", "student-only"), ("seed", 1), ("profile", "quick"),
    ("budget", {"mode": "steps", "steps": 31, "seconds": None}),
    ("hparams", {"temperature": 2.0, "alpha": 0.5}), ("teacher_sha256", "b" * 64),
    ("scenario", "noise-40"), ("student", "d" * 12),
])
def test_every_identity_field_makes_a_new_cell(key, value):
    assert set(IDENTITY) <= set(IDENTITY_KEYS)  # the seven fields, at least
    assert cell_id({**IDENTITY, key: value}) != cell_id(IDENTITY)


def test_a_changed_student_schedule_or_architecture_is_a_new_cell(registry):
    """A record made with another student (its spec) or another student schedule (lr,
    warm-up, batch) is never resumed as today's cell; the teacher's fields change nothing."""
    import dataclasses

    from kdbench.results import student_digest

    pair = registry.pair("mlp-hinton").obj()
    base = student_digest(pair.student_recipe("smoke"))
    smoke = pair.schedules["smoke"]
    variants = {"lr": dataclasses.replace(smoke, lr=smoke.lr * 2), "warmup": dataclasses.replace(smoke, warmup=0.1),
                "teacher": dataclasses.replace(smoke, teacher_steps=smoke.teacher_steps + 1, teacher_lr=0.5),
                "steps": dataclasses.replace(smoke, steps=smoke.steps + 1)}  # the budget names the steps
    digests = {}
    for name, schedule in variants.items():
        pair.schedules = {**type(pair).schedules, "smoke": schedule}
        digests[name] = student_digest(pair.student_recipe("smoke"))
    pair.schedules = type(pair).schedules
    pair.student_spec = {**type(pair).student_spec, "hidden": (400, 400)}
    digests["spec"] = student_digest(pair.student_recipe("smoke"))
    assert digests["lr"] != base and digests["warmup"] != base and digests["spec"] != base
    assert digests["teacher"] == base and digests["steps"] == base
    legacy = {k: v for k, v in IDENTITY.items() if k != "student"}  # written before the digest existed
    assert cell_id({**legacy, "student": None}) == cell_id(legacy) != cell_id(IDENTITY)


def test_identity_ignores_everything_else():
    assert cell_id({**IDENTITY, "metrics": {"test_acc": 0.5}, "created": "now"}) == cell_id(IDENTITY)


# -- grids sharing one small finished run ----------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-cell smoke grid; tests copy it before changing anything."""
    from click.testing import CliRunner

    from kdbench.cli import cli

    out = tmp_path_factory.mktemp("reliability") / "grid"
    args = ["run", "--methods", "student-only,hinton", *SMOKE, "--seeds", "2", "--budget-steps", "4",
            "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, args


def _copy(finished, tmp_path: Path) -> tuple[Path, list[str]]:
    src, args = finished
    out = tmp_path / "grid"
    shutil.copytree(src, out)
    return out, [*args[:-1], str(out)]


def test_resume_reports_a_torn_record_by_path_and_reruns_only_that_cell(finished, tmp_path, cli_run):
    out, args = _copy(finished, tmp_path)
    files = sorted(out.rglob("seed*.json"))
    torn = files[0]
    torn.write_bytes(torn.read_bytes()[:100])
    untouched = {f: _fingerprint(f) for f in files[1:]}
    code, stdout, stderr = cli_run(*args)
    assert code == 0, stderr
    assert f"kdbench: warning: ignoring {torn}: torn or invalid JSON" in stderr
    assert "1 cells run, 3 reused" in stdout
    assert read_record(torn)["status"] == "ok"
    assert all(_fingerprint(f) == fp for f, fp in untouched.items())


def test_changed_hyper_parameter_is_a_new_cell_and_force_recomputes(finished, tmp_path, cli_run):
    out, args = _copy(finished, tmp_path)
    old = {f: _fingerprint(f) for f in out.rglob("seed*.json")}
    one = [a if a != "student-only,hinton" else "hinton" for a in args]
    i = one.index("--seeds")
    one[i + 1] = "1"

    code, stdout, stderr = cli_run(*one, "--set", "hinton.temperature=2")
    assert code == 0, stderr
    assert "1 cells run, 0 reused" in stdout
    new = [f for f in out.rglob("seed*.json") if f not in old]
    assert len(new) == 1 and read_record(new[0])["hparams"]["temperature"] == 2.0
    assert all(_fingerprint(f) == fp for f, fp in old.items())

    code, stdout, _ = cli_run(*one)  # the default temperature: reused, not rerun
    assert "0 cells run, 1 reused" in stdout
    code, stdout, _ = cli_run(*one, "--force")
    assert code == 0 and "1 cells run, 0 reused" in stdout
    (hinton0,) = [f for f in old if f.parent.name == "hinton" and f.name.startswith("seed0-")]
    assert _fingerprint(hinton0) != old[hinton0]
    assert len(list(out.rglob("seed*.json"))) == 5


def test_report_names_torn_and_malformed_records_and_ignores_them(finished, tmp_path, cli_run):
    out, _ = _copy(finished, tmp_path)
    good = sorted(out.rglob("seed*.json"))
    bad_dir = out / "mlp-hinton" / "hinton"
    torn = bad_dir / "seed7-000000000001.json"
    torn.write_text(good[0].read_text()[:200])
    not_record = bad_dir / "seed8-000000000002.json"
    not_record.write_text(json.dumps({"hello": "world"}))
    wrong_type = bad_dir / "seed9-000000000003.json"
    record = json.loads(good[0].read_text())
    record["metrics"]["test_acc"] = "high"
    wrong_type.write_text(json.dumps(record))
    listing = bad_dir / "seed10-000000000004.json"
    listing.write_text("[1, 2, 3]")

    code, stdout, stderr = cli_run("report", str(out))
    assert code == 0, stderr
    for f in (torn, not_record, wrong_type, listing):
        assert f"kdbench: warning: ignoring {f}:" in stderr
    assert re.search(r"^hinton +\d", stdout, re.M) and re.search(r"^student-only +\d", stdout, re.M)
    assert "Traceback" not in stderr


# -- numerical faults --------------------------------------------------------------------

def test_nan_at_step_k_fails_only_that_cell_with_the_reason(tmp_path, cli_run):
    plugin = tmp_path / "nan_at_step.py"
    plugin.write_text(NAN_METHOD)
    out = tmp_path / "out"
    code, stdout, stderr = cli_run("run", "--plugin", str(plugin), "--methods", "nan-at-step,student-only",
                                   *SMOKE, "--budget-steps", "6", "--set", "nan-at-step.at=3",
                                   "--out", str(out))
    assert code == 1, stderr  # 1: some cells failed
    by_method = {r["method"]: r for r in load_records([out])}
    failed = by_method["nan-at-step"]
    assert failed["status"] == "failed"
    assert failed["failure"] == {"step": 3, "term": "match"}
    assert failed["error"] == "non-finite loss at step 3 in term match"
    assert by_method["student-only"]["status"] == "ok"
    assert "1 failed." in stdout
    assert "FAILED mlp-hinton/nan-at-step/seed0: non-finite loss at step 3 in term match" in stderr


def test_fail_fast_stops_at_the_first_failed_cell(tmp_path, cli_run):
    plugin = tmp_path / "nan_at_step.py"
    plugin.write_text(NAN_METHOD)
    out = tmp_path / "out"
    code, stdout, stderr = cli_run("run", "--plugin", str(plugin), "--methods", "nan-at-step,student-only",
                                   *SMOKE, "--seeds", "2", "--budget-steps", "4", "--set", "nan-at-step.at=0",
                                   "--out", str(out), "--fail-fast")
    assert code == 1, stderr
    records = load_records([out])
    assert [(r["method"], r["seed"], r["status"]) for r in records] == [("nan-at-step", 0, "failed")]
    assert "stopped at the first failed cell (--fail-fast); 3 cells not run" in stderr


def test_gradient_fault_names_the_step(registry):
    """A finite loss with a non-finite gradient (sqrt at 0) also ends the cell."""
    import torch
    from torch import nn

    from kdbench.api import Budget, Method, Schedule, TensorData
    from kdbench.train import NumericalFault, train

    class SqrtOfZero(Method):
        name = "sqrt-of-zero"
        uses_teacher = False

        def loss(self, student, teacher, labels):
            return {"root": (student.logits * 0).sum().sqrt()}

    def forward(model, x, needs):
        from kdbench.api import Outputs
        return Outputs(logits=model(x))

    torch.manual_seed(0)
    data = TensorData(torch.randn(32, 4), torch.zeros(32, dtype=torch.long))
    with pytest.raises(NumericalFault) as info:
        train(nn.Linear(4, 2), SqrtOfZero(), data, Budget(steps=3), Schedule(steps=3, teacher_steps=0, batch_size=8),
              forward, seed=0)
    assert info.value.step == 0 and info.value.term == "gradient"
    assert "non-finite gradient norm at step 0" in str(info.value)


# -- teacher integrity -------------------------------------------------------------------

def _teacher_files(home: Path) -> tuple[Path, Path]:
    (card,) = (home / "teachers").glob("mlp-2x1200-dropout-*/card.json")
    return card, card.parent / "model.safetensors"


def test_corrupt_teacher_checkpoint_is_detected_and_retrained(tmp_path, cli_run, monkeypatch):
    train = ("teachers", "train", "--pairs", "mlp-hinton", "--profile", "smoke")
    code, _, stderr = cli_run(*train)  # the session's zoo: trained once, shared with other tests
    assert code == 0, stderr
    shared_card, _ = _teacher_files(Path(os.environ["KDBENCH_HOME"]))
    home = tmp_path / "home"
    shutil.copytree(shared_card.parent, home / "teachers" / shared_card.parent.name)
    monkeypatch.setenv("KDBENCH_HOME", str(home))  # corrupt a private copy
    card_path, weights = _teacher_files(home)
    sha = json.loads(card_path.read_text())["sha256"]
    assert sha256_file(weights) == sha

    intact = _fingerprint(weights)
    code, _, stderr = cli_run(*train)  # intact: verified and loaded, not retrained
    assert code == 0 and "warning" not in stderr and _fingerprint(weights) == intact

    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    corrupt_sha = sha256_file(weights)
    code, _, stderr = cli_run(*train)
    assert code == 0, stderr
    assert (f"kdbench: warning: teacher checkpoint {weights} is corrupt: its sha256 is {corrupt_sha[:12]}…, "
            f"its card says {sha[:12]}…; not loading it, retraining the teacher") in stderr
    assert sha256_file(weights) == json.loads(card_path.read_text())["sha256"]
    assert _tmp_files(home) == []


def test_teacher_interrupted_before_its_card_is_trained_again(tmp_path, registry):
    """A kill between the weights and the card leaves no card: the teacher is retrained,
    never loaded half-finished; the new card matches the new weights."""
    import torch

    from kdbench.plan import RunConfig
    from kdbench.worker import CellWorker

    runner = CellWorker(RunConfig(profile="smoke", out=tmp_path / "out", zoo_root=tmp_path / "zoo",
                                  progress=False), registry)
    pair = registry.pair("mlp-hinton").obj()
    folder = runner.zoo.folder(pair.teacher_recipe("smoke"))
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half a checkpoint")
    teacher = runner.teacher(pair, runner.data(pair))
    card = json.loads((folder / "card.json").read_text())
    assert card["sha256"] == sha256_file(folder / "model.safetensors") == teacher.sha256
    assert all(torch.isfinite(p).all() for p in teacher.model.parameters())


def test_nothing_loads_pickles():
    """kdbench and the built-in plugins load weights with safetensors or weights_only=True."""
    offenders = []
    for folder in ("kdbench", "plugins"):
        for f in (ROOT / folder).rglob("*.py"):
            text = f.read_text()
            for m in re.finditer(r"torch\.load\(([^)]*)\)|pickle\.loads?\(|allow_pickle\s*=\s*True", text):
                if m.group(0).startswith("torch.load") and "weights_only=True" in m.group(1):
                    continue
                offenders.append(f"{f.relative_to(ROOT)}: {m.group(0)}")
    assert offenders == []
