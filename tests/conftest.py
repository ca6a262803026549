"""Shared fixtures: a fresh kdbench home per session, offline, smoke-sized everything."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KDBENCH_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def kdbench_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own teacher zoo; nothing is read from ~/.cache."""
    home = tmp_path_factory.mktemp("kdbench-home")
    old = os.environ.get("KDBENCH_HOME")
    os.environ["KDBENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("KDBENCH_HOME", None)
    else:
        os.environ["KDBENCH_HOME"] = old


@pytest.fixture(scope="session")
def registry():
    from kdbench.plugins import load_registry

    return load_registry()


@pytest.fixture(scope="session")
def grid_out(tmp_path_factory: pytest.TempPathFactory):
    """Run `kdbench run ARGS` in-process into a fresh folder; assert it succeeded; return the folder."""
    from click.testing import CliRunner

    from kdbench.cli import cli

    def run(*args: str, name: str = "grid") -> Path:
        out = tmp_path_factory.mktemp(name)
        result = CliRunner().invoke(cli, ["run", *args, "--out", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return out

    return run


@pytest.fixture
def cli_run(tmp_path: Path):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from kdbench.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        runner = CliRunner()
        result = runner.invoke(_Main(main), list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


class _Main:
    """Adapter so CliRunner can call `kdbench.cli.main` (with its one-line error handling)."""

    def __init__(self, fn):
        self.fn = fn
        self.name = "kdbench"

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        return self.fn(args)
