"""Shipped teachers: a recipe reproduced at smoke size, verified, used by a run, refused when
tampered with, and packaged in the wheel.

The run tests use a plugin pair (`mlp-shipped`, `mlp-hinton` with its shipped folder pointed
at a smoke-sized reproduction and `shipped_profiles = ("smoke",)`) so the real loading path
runs at smoke size; the built-in pairs ship theirs for `quick` and `standard`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kdbench.fsutil import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SMOKE_RECIPE = ("--train-limit", "512", "--eval-limit", "256", "--max-steps", "8", "--quiet")

PLUGIN = '''
from kdbench import hookimpl
from kdbench_plugins.mlp_hinton import MLPHinton


class MLPShipped(MLPHinton):
    """mlp-hinton whose smoke profile uses a shipped teacher (for tests)."""

    name = "mlp-shipped"
    shipped_teacher_dir = {folder!r}
    shipped_profiles = ("smoke",)


@hookimpl
def kdbench_pairs():
    return [MLPShipped]
'''


@pytest.fixture(scope="module")
def smoke_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mlp-hinton zoo recipe reproduced at smoke size (8 steps on 512 images)."""
    from click.testing import CliRunner

    from kdbench.cli import cli

    folder = tmp_path_factory.mktemp("shipped") / "mlp-hinton"
    result = CliRunner().invoke(cli, ["teachers", "train", "--pairs", "mlp-hinton", "--recipe", "zoo",
                                      "--out", str(folder), *SMOKE_RECIPE], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


def _plugin(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "mlp_shipped_plugin.py"
    path.write_text(PLUGIN.format(folder=str(folder)))
    return path


def test_recipe_reproduces_at_smoke_size(smoke_teacher: Path, tmp_path: Path, cli_run) -> None:
    card = json.loads((smoke_teacher / "card.json").read_text())
    assert card["source"] == "shipped" and card["pair"] == "mlp-hinton" and card["steps"] == 8
    from kdbench_plugins.mlp_hinton import MLPHinton

    assert card["recipe"] == MLPHinton().zoo_recipe() and card["files"] == {"model.safetensors": card["sha256"]}
    assert card["sha256"] == sha256_file(smoke_teacher / "model.safetensors")
    for key in ("command", "data_fingerprint", "val_acc", "test_acc", "train_seconds", "versions", "val_curve"):
        assert key in card, key
    assert "--recipe zoo" in card["command"]
    # the same command from scratch gives the same checkpoint, byte for byte
    again = tmp_path / "again"
    code, stdout, stderr = cli_run("teachers", "train", "--pairs", "mlp-hinton", "--recipe", "zoo",
                                   "--out", str(again), *SMOKE_RECIPE)
    assert code == 0, stderr
    assert sha256_file(again / "model.safetensors") == card["sha256"]
    code, stdout, _ = cli_run("teachers", "verify", "--dir", str(again))
    assert code == 0 and stdout.startswith("ok ")


def test_run_uses_the_shipped_teacher_and_records_its_sha256(smoke_teacher: Path, tmp_path: Path, cli_run) -> None:
    sha = json.loads((smoke_teacher / "card.json").read_text())["sha256"]
    plugin = _plugin(tmp_path, smoke_teacher)
    out = tmp_path / "runs"
    code, _, stderr = cli_run("run", "--plugin", str(plugin), "--pairs", "mlp-shipped", "--methods",
                              "student-only,hinton", "--profile", "smoke", "--out", str(out), "--quiet")
    assert code == 0, stderr
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert len(records) == 2
    for r in records:
        assert r["status"] == "ok" and r["teacher_sha256"] == sha and r["teacher_key"].startswith("shipped-")
    code, stdout, _ = cli_run("teachers", "list", "--plugin", str(plugin))
    assert code == 0 and "source=shipped" in stdout and sha[:12] in stdout


def test_teacher_card_names_its_source(smoke_teacher: Path, tmp_path: Path) -> None:
    from kdbench.accel import Accel
    from kdbench.data import limit
    from kdbench.plugins import load_registry
    from kdbench.zoo import Zoo

    registry = load_registry([str(_plugin(tmp_path, smoke_teacher))])
    accel = Accel.choose(__import__("torch").device("cpu"), "fp32")
    zoo = Zoo(tmp_path / "home")
    for name, source in (("mlp-shipped", "shipped"), ("mlp-hinton", "trained")):
        pair = registry.pair(name).obj()
        s = pair.schedule("smoke")
        splits = limit(registry.dataset(pair.dataset).obj().load(), s.train_limit, s.eval_limit)
        teacher = zoo.get(pair, "smoke", splits, accel)
        assert teacher.card["source"] == source
        # the weak-teacher scenario trains its under-trained teacher even where one is shipped
        if source == "shipped":
            weak = zoo.get(pair, "smoke", splits, accel, steps_fraction=0.5)
            assert weak.card["source"] == "trained" and weak.sha256 != teacher.sha256


def test_tampered_shipped_checkpoint_is_reported_and_refused(smoke_teacher: Path, tmp_path: Path, cli_run) -> None:
    folder = tmp_path / "mlp-hinton"
    shutil.copytree(smoke_teacher, folder)
    weights = folder / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    plugin = _plugin(tmp_path, folder)

    code, stdout, stderr = cli_run("teachers", "verify", "--plugin", str(plugin))
    assert code == 1 and f"MISMATCH {weights}" in stderr
    code, _, stderr = cli_run("teachers", "verify", "--dir", str(folder))
    assert code == 1 and str(weights) in stderr

    out = tmp_path / "runs"
    code, stdout, stderr = cli_run("run", "--plugin", str(plugin), "--pairs", "mlp-shipped", "--methods",
                                   "student-only", "--profile", "smoke", "--out", str(out), "--quiet")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("kdbench: error: shipped teacher checkpoint ")
    assert str(weights) in lines[0]
    assert not out.exists() or not list(out.rglob("*.json"))  # refused before any cell ran


def test_builtin_shipped_teachers_verify(cli_run) -> None:
    code, stdout, stderr = cli_run("teachers", "verify")
    assert code == 0, stderr


def test_wheel_contains_the_shipped_teachers(smoke_teacher: Path, tmp_path: Path) -> None:
    """`pip wheel .` packs every shipped teacher folder (and one planted in a copy of the
    checkout, so the package-data rule is checked even before a teacher is shipped)."""
    source = tmp_path / "src"
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "results", ".pytest_cache", ".benchmarks", "__pycache__", "build", "*.egg-info"))
    shutil.copytree(smoke_teacher, source / "plugins" / "teachers" / "planted-for-test")
    shipped = sorted(p.parent for p in (source / "plugins" / "teachers").glob("*/card.json"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True,
                            env={**os.environ, "PIP_NO_INDEX": "1"})
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("kdbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in shipped:
        card = json.loads((folder / "card.json").read_text())
        for name in ["card.json", *card["files"]]:
            assert f"kdbench_plugins/teachers/{folder.name}/{name}" in names


def test_recipe_schedule_follows_the_recipe_and_defaults_to_no_warmup() -> None:
    from kdbench.shipped import recipe_schedule
    from kdbench_plugins.vit_cnn import ViTCNN

    recipe = ViTCNN().zoo_recipe()
    plain = recipe_schedule(recipe, 100)
    assert (plain.steps, plain.lr, plain.weight_decay, plain.warmup) == (100, recipe["lr"], recipe["weight_decay"], 0.0)
    assert recipe_schedule({**recipe, "warmup": 0.05}, 100).warmup == 0.05
    assert plain.extra == {} and recipe_schedule({**recipe, "group_by_length": 50}, 100).extra == {"group_by_length": 50}
