"""Benchmarks (`make bench`), not tests: they time things and report ratios measured
side by side in one run. Ratios are printed at the end and kept in the JSON that
pytest-benchmark saves (`extra_info`)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("KDBENCH_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATIOS: list[str] = []


@pytest.fixture
def report_ratio():
    def report(line: str) -> None:
        RATIOS.append(line)

    return report


def pytest_terminal_summary(terminalreporter):
    if RATIOS:
        terminalreporter.section("kdbench ratios (measured side by side in this run)")
        for line in RATIOS:
            terminalreporter.write_line(line)
