"""Issue 7's bad-input matrix: every user mistake is one line on stderr, exit code 2,
and nothing written — neither --out nor the teacher zoo is created or touched.

Each row of the matrix is one test (rows with several spellings are parametrized).
The errors come before any data is loaded or any model trained, except the missing
dataset, which is found when the data is loaded, still before anything is written.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import kdbench.runner  # noqa: F401 - import torch's noisy modules before any CLI call captures stderr

SMOKE = ["--pairs", "mlp-hinton", "--profile", "smoke", "--quiet"]

FEATURE_METHOD = '''
import torch.nn.functional as F
from kdbench import Method, hookimpl

class NeedsFeatures(Method):
    """Reads feature maps, which an MLP pair does not expose (a test method)."""
    name = "needs-features"
    needs = frozenset({"logits", "features"})

    def loss(self, student, teacher, labels):
        return {"ce": F.cross_entropy(student.logits, labels)}

@hookimpl
def kdbench_methods():
    return [NeedsFeatures]
'''

BAD_DATASET_PAIR = '''
from kdbench import Pair, Schedule, hookimpl

class TypoPair(Pair):
    """A pair whose dataset name has a typo (a test pair)."""
    name = "typo-pair"
    dataset = "fashion-mnsit"
    schedules = {"smoke": Schedule(steps=2, teacher_steps=2)}

@hookimpl
def kdbench_pairs():
    return [TypoPair]
'''


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every folder under `root`, and every file with its size and mtime: to show nothing
    was written. (A folder's own mtime may move: writability is probed by creating and
    at once removing an empty temporary folder in it.)"""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def usage_error(cli_run, tmp_path):
    """Run the CLI expecting a user mistake; check the one-line contract; return the line."""
    home = Path(os.environ["KDBENCH_HOME"])

    def check(*args: str, out: Path | None = None) -> str:
        zoo_before = _tree(home)
        code, stdout, stderr = cli_run(*args)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, (code, stdout, stderr)
        assert len(lines) == 1, stderr
        assert lines[0].startswith("kdbench: error: "), stderr
        assert stdout == ""
        if out is not None:
            assert not out.exists(), f"{out} was created"
        assert _tree(home) == zoo_before, "the teacher zoo was written"
        return lines[0]

    return check


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def _run(out: Path, *extra: str, methods: str = "student-only,hinton") -> list[str]:
    return ["run", "--methods", methods, *SMOKE, "--out", str(out), *extra]


def test_unknown_method_suggests_the_closest(usage_error, out):
    line = usage_error(*_run(out, methods="hintn"), out=out)
    assert "unknown method 'hintn'" in line and "did you mean 'hinton'" in line


def test_unknown_pair_suggests_the_closest(usage_error, out):
    line = usage_error("run", "--methods", "hinton", "--pairs", "mlp-hintn", "--profile", "smoke",
                       "--out", str(out), out=out)
    assert "unknown pair 'mlp-hintn'" in line and "did you mean 'mlp-hinton'" in line


def test_unknown_dataset_of_a_pair_suggests_the_closest(cli_run, out, tmp_path):
    """Datasets are named by pairs, not on the command line: the plugin loader drops the
    pair with a warning that suggests the dataset, then naming the pair is the error."""
    plugin = tmp_path / "typo_pair.py"
    plugin.write_text(BAD_DATASET_PAIR)
    code, stdout, stderr = cli_run("run", "--plugin", str(plugin), "--methods", "student-only",
                                   "--pairs", "typo-pair", "--profile", "smoke", "--out", str(out))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and stdout == "" and not out.exists()
    assert [line for line in lines if line.startswith("kdbench: error: ")] == [lines[-1]]
    assert "'typo-pair'" in lines[-1]
    assert any("'fashion-mnsit'" in line and "did you mean 'fashion-mnist'" in line for line in lines), stderr


def test_plan_refuses_a_pair_whose_dataset_is_unknown(registry, monkeypatch):
    """Even a registry built in-process is checked before any training."""
    from kdbench import UsageError
    from kdbench.plan import plan

    pair = registry.pair("mlp-hinton").obj
    monkeypatch.setattr(pair, "dataset", "fashion-mnsit")
    with pytest.raises(UsageError, match="pair 'mlp-hinton': unknown dataset 'fashion-mnsit'; did you mean"):
        plan(registry, ["student-only"], ["mlp-hinton"], 1)


def test_unknown_profile_suggests_the_closest(usage_error, out):
    line = usage_error("run", "--methods", "hinton", "--pairs", "mlp-hinton", "--profile", "smok",
                       "--out", str(out), out=out)
    assert "unknown profile 'smok'" in line and "did you mean 'smoke'" in line


def test_incompatible_method_and_pair_names_both(usage_error, out, tmp_path):
    plugin = tmp_path / "needs_features.py"
    plugin.write_text(FEATURE_METHOD)
    line = usage_error(*_run(out, "--plugin", str(plugin), methods="needs-features"), out=out)
    assert "'needs-features'" in line and "'mlp-hinton'" in line and "features" in line


@pytest.mark.parametrize("seeds", ["0", "-1"])
def test_seeds_below_one(usage_error, out, seeds):
    line = usage_error(*_run(out, "--seeds", seeds), out=out)
    assert "--seeds must be at least 1" in line


@pytest.mark.parametrize("budget", [
    ["--budget-steps", "0"],
    ["--budget-steps", "-5"],
    ["--budget-mode", "time", "--budget-seconds", "0"],
    ["--budget-mode", "time", "--budget-seconds", "-1.5"],
], ids=["steps-0", "steps-negative", "seconds-0", "seconds-negative"])
def test_zero_or_negative_budget(usage_error, out, budget):
    line = usage_error(*_run(out, *budget), out=out)
    assert "budget must be a positive number" in line


def test_budget_seconds_without_time_mode(usage_error, out):
    line = usage_error(*_run(out, "--budget-seconds", "5"), out=out)
    assert "--budget-seconds needs --budget-mode time" in line


def test_budget_steps_with_time_mode_is_refused_not_ignored(usage_error, out):
    line = usage_error(*_run(out, "--budget-mode", "time", "--budget-seconds", "2", "--budget-steps", "5"),
                       out=out)
    assert "--budget-steps" in line and "time" in line


def test_set_unknown_key_suggests_the_closest(usage_error, out):
    line = usage_error(*_run(out, "--set", "hinton.temp=3"), out=out)
    assert "no hyper-parameter 'temp'" in line and "did you mean 'temperature'" in line


@pytest.mark.parametrize("value", ["hinton.temperature=hot", "hinton.alpha=nan", "hinton.alpha="])
def test_set_value_of_the_wrong_type(usage_error, out, value):
    line = usage_error(*_run(out, "--set", value), out=out)
    assert "is not a valid float" in line


@pytest.mark.parametrize("item", ["hinton.temperature", "temperature=3", "=3", "hinton.=3", ".temperature=3"])
def test_set_malformed_syntax(usage_error, out, item):
    line = usage_error(*_run(out, "--set", item), out=out)
    assert "expected METHOD.KEY=VALUE" in line


def test_set_for_a_method_not_in_the_grid(usage_error, out):
    line = usage_error(*_run(out, "--set", "hinton.temperature=2", methods="student-only"), out=out)
    assert "'hinton' is not in --methods" in line


def test_out_pointing_at_a_file(usage_error, tmp_path):
    target = tmp_path / "records.json"
    target.write_text("{}")
    line = usage_error(*_run(target))
    assert "is a file, not a folder" in line
    assert target.read_text() == "{}"


def test_out_under_a_file_is_not_writable(usage_error, tmp_path):
    """An honest unwritable folder even for root: no folder can be created inside a file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker / "runs"
    line = usage_error(*_run(out))
    assert f"--out {out} is not usable" in line and "is a file, not a folder" in line


def test_out_in_a_folder_the_kernel_refuses(usage_error):
    """/proc refuses new entries to every user, root included."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    out = Path("/proc/kdbench-test-out")
    line = usage_error(*_run(out), out=out)
    assert "--out /proc/kdbench-test-out is not usable: cannot create files in /proc" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores permission bits; the two tests above cover root")
def test_out_in_a_read_only_folder(usage_error, tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        line = usage_error(*_run(parent / "out"), out=parent / "out")
    finally:
        parent.chmod(0o700)
    assert "not usable" in line


def test_report_on_a_folder_with_no_records(usage_error, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    line = usage_error("report", str(empty))
    assert "no kdbench records under" in line and str(empty) in line


def test_report_refuses_a_folder_that_mixes_two_teachers(usage_error, tmp_path):
    """After a teacher change the new cells land beside the old records; averaging them
    would mix two setups, so the report names the pair and both teachers instead."""
    import json

    folder = tmp_path / "mixed" / "p" / "student-only"
    folder.mkdir(parents=True)
    for seed, teacher in enumerate(["a" * 64, "b" * 64]):
        record = {"pair": "p", "method": "student-only", "seed": seed, "profile": "smoke", "status": "ok",
                  "teacher_sha256": teacher, "student": "s1", "dataset": "d",
                  "budget": {"mode": "steps", "steps": 10, "seconds": None},
                  "metrics": {"test_acc": 0.5, "teacher_test_acc": 0.9},
                  "params": {"teacher": 100, "student": 10, "adapters": 0}, "speedup_bs1": 2.0, "speedup_bsN": 3.0}
        (folder / f"seed{seed}-{teacher[:4]}.json").write_text(json.dumps(record))
    line = usage_error("report", str(tmp_path / "mixed"))
    assert "pair 'p' (smoke, full) has records of 2 setups" in line and "a" * 12 in line and "b" * 12 in line
    assert "own folder" in line


def test_report_on_a_missing_folder(usage_error, tmp_path):
    line = usage_error("report", str(tmp_path / "nope"))
    assert "no such file or folder" in line


def test_dataset_missing_offline(usage_error, out, tmp_path, monkeypatch):
    """Point every place fashion-mnist looks at empty folders; offline, so no download."""
    import kdbench_plugins.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "no-system-copy"))
    monkeypatch.delenv("KDBENCH_DATA", raising=False)
    monkeypatch.setenv("KDBENCH_OFFLINE", "1")
    empty = tmp_path / "empty-data"
    empty.mkdir()
    line = usage_error(*_run(out, "--data-dir", str(empty)), out=out)
    assert "fashion-mnist IDX files not found" in line and str(empty) in line
    assert "apt-get install dataset-fashion-mnist" in line


def test_zoo_folder_not_writable(usage_error, out, tmp_path, monkeypatch):
    """KDBENCH_HOME under a file: no teacher could ever be cached there, root or not."""
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("KDBENCH_HOME", str(blocker / "kdbench"))
    line = usage_error(*_run(out), out=out)
    assert "teacher zoo" in line and "not writable" in line and "KDBENCH_HOME" in line
    assert blocker.read_text() == ""


def test_plugin_name_that_would_leave_out_is_refused(usage_error, out, tmp_path):
    plugin = tmp_path / "escaping.py"
    plugin.write_text(FEATURE_METHOD.replace('"needs-features"', '"../escape"')
                      .replace('frozenset({"logits", "features"})', 'frozenset({"logits"})'))
    line = usage_error(*_run(out, "--plugin", str(plugin), methods="../escape"), out=out)
    assert "cannot be used as a folder name" in line


@pytest.mark.parametrize("device, says", [
    ("tpu-9", "is not a device"),
    ("mps", "kdbench runs on cpu or cuda"),
    ("cuda:99", "CUDA"),  # no GPU here; on a GPU machine: fewer than 100 devices
])
def test_device_that_does_not_exist_here(usage_error, out, device, says):
    line = usage_error(*_run(out, "--device", device), out=out)
    assert f"--device {device}" in line or f"--device {device!r}" in line
    assert says in line


def test_cuda_without_a_gpu_says_to_use_cpu(usage_error, out):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    line = usage_error(*_run(out, "--device", "cuda"), out=out)
    assert "no CUDA GPU" in line and "--device cpu" in line


def test_unknown_precision(usage_error, out):
    line = usage_error(*_run(out, "--precision", "fp16"), out=out)
    assert "--precision" in line and "bf16" in line


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_that_is_not_a_folder(usage_error, out, tmp_path, kind):
    """A mistyped --data-dir is an error, not silently replaced by the installed dataset."""
    path = tmp_path / "data"
    if kind == "file":
        path.write_text("")
    line = usage_error(*_run(out, "--data-dir", str(path)), out=out)
    assert f"--data-dir {path} is not a folder" in line


def test_threads_below_one(usage_error, out):
    line = usage_error(*_run(out, "--threads", "0"), out=out)
    assert "--threads must be at least 1" in line
