"""The committed leaderboard is generated from the committed records, byte for byte."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS, LEADERBOARD = ROOT / "results", ROOT / "leaderboard.md"


@pytest.mark.skipif(not LEADERBOARD.is_file(), reason="no committed leaderboard.md")
def test_report_on_committed_results_reproduces_the_leaderboard(tmp_path, cli_run):
    # the same layout as the repository, so the plot links come out identical
    output = tmp_path / "leaderboard.md"
    code, _, stderr = cli_run("report", str(RESULTS), "--output", str(output),
                              "--plots", str(tmp_path / "results" / "plots"), "--title", "kdbench leaderboard")
    assert code == 0, stderr
    assert output.read_bytes() == LEADERBOARD.read_bytes()


@pytest.mark.skipif(not LEADERBOARD.is_file(), reason="no committed leaderboard.md")
def test_leaderboard_links_only_committed_plots():
    import re

    links = re.findall(r"\]\((results/plots/[^)]+\.png)\)", LEADERBOARD.read_text())
    assert links, "the leaderboard links its plots"
    assert all((ROOT / link).is_file() for link in links)
