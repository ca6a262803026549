"""The external example package examples/kdbench-dkd, installed with pip and used like any user would.

The package is built and installed by pip (no dependencies, no index: offline) into a
throwaway `--target` folder; the commands below run with that folder on PYTHONPATH, where
`importlib.metadata` finds its entry point — the environment itself is left alone.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kdbench-dkd"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dkd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install kdbench-dkd into a temporary folder; returns the environment that sees it."""
    src = tmp_path_factory.mktemp("dkd-src") / "kdbench-dkd"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    site = tmp_path_factory.mktemp("dkd-site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(src)]
    offline = subprocess.run([*pip, "--no-build-isolation", "--no-index"], capture_output=True, text=True, timeout=600)
    if offline.returncode != 0:  # no usable setuptools in this environment: let pip fetch the build backend
        subprocess.run(pip, check=True, timeout=600)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DKD_SRC"] = str(src)
    env["DKD_SITE"] = str(site)
    return env


def kdbench(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kdbench", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)


def test_list_shows_dkd_with_its_package_and_version(dkd, cli_run, monkeypatch):
    monkeypatch.syspath_prepend(dkd["DKD_SITE"])
    code, stdout, stderr = cli_run("list", "methods")
    assert code == 0, stderr
    line = next(line for line in stdout.splitlines() if line.split()[:1] == ["dkd"])
    assert "[kdbench-dkd 0.1.0]" in line and "Decoupled KD" in line, line
    assert "BROKEN" not in stdout


def test_dkd_and_hinton_run_through_kdbench_run(dkd, tmp_path):
    out = tmp_path / "runs" / "dkd"
    proc = kdbench(dkd, "run", "--methods", "dkd,hinton", "--pairs", "mlp-hinton", "--profile", "smoke",
                   "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in out.rglob("*.json"))}
    assert sorted(records) == ["dkd", "hinton"]
    assert all(r["status"] == "ok" for r in records.values())
    dkd_record = records["dkd"]
    assert set(dkd_record["terms"]) == {"ce", "tckd", "nckd"}
    assert dkd_record["hparams"] == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0,
                                     "warmup": pytest.approx(20 / 240)}
    assert dkd_record["teacher_sha256"] == records["hinton"]["teacher_sha256"]  # one teacher for both
    assert re.search(r"^dkd +\d", proc.stdout, re.M)


def test_set_rejects_an_unknown_dkd_hyper_parameter_before_training(dkd, cli_run, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(dkd["DKD_SITE"])
    code, _, stderr = cli_run("run", "--methods", "dkd", "--pairs", "mlp-hinton", "--profile", "smoke",
                              "--set", "dkd.gamma=2", "--out", str(tmp_path / "runs"))
    assert code == 2
    assert "method 'dkd' has no hyper-parameter 'gamma'" in stderr
    assert not (tmp_path / "runs").exists()


def test_example_package_passes_its_own_tests(dkd):
    """The package's tests: the loss by hand, the paper's decomposition, and the conformance kit."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=dkd["DKD_SRC"],
                          env=dkd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "7 passed" in proc.stdout

