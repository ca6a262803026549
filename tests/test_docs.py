"""docs/plugins.md runs: every fenced code block is executed, in order, as one shell session.

Blocks tagged `file=PATH` are written to PATH; other `python` blocks run with `python -`;
`bash` blocks run as they are. The session runs in a temporary folder with the venv's
`kdbench` and `python` on PATH, and `pip install` redirected to a throwaway `--target`
folder on PYTHONPATH, so the guide's install step leaves the environment alone.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\S+)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)
EOF_MARK = "KDBENCH_DOC_EOF"

PIP_SANDBOX = r"""
pip() {  # the guide's `pip install [-e] PATH`, into a throwaway folder instead of the venv
  if [ "$1" = install ]; then
    shift; local args=()
    for a in "$@"; do
      if [ "$a" = -e ]; then continue; elif [ -d "$a" ]; then args+=("$(realpath "$a")"); else args+=("$a"); fi
    done
    python -m pip install --quiet --no-deps --no-build-isolation --no-index --target "$DOC_SITE" "${args[@]}" \
      || python -m pip install --quiet --no-deps --target "$DOC_SITE" "${args[@]}"
  else
    python -m pip "$@"
  fi
}
"""


def blocks(text: str) -> list[tuple[int, str, dict[str, str], str]]:
    """(line, language, attributes, body) of every fenced block."""
    out = []
    for m in FENCE.finditer(text):
        attrs = dict(a.split("=", 1) for a in m.group(2).split() if "=" in a)
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1), attrs, m.group(3)))
    return out


def script(text: str) -> tuple[str, int]:
    """The guide as one bash script, with a marker echoed after each block."""
    parts = ["set -euo pipefail", PIP_SANDBOX]
    found = blocks(text)
    for i, (line, lang, attrs, body) in enumerate(found):
        assert EOF_MARK not in body
        parts.append(f"echo '>>> block {i} ({lang}, docs/plugins.md line {line})'")
        if "file" in attrs:
            path = shlex.quote(attrs["file"])
            parts.append(f"mkdir -p \"$(dirname {path})\"\ncat > {path} <<'{EOF_MARK}'\n{body}{EOF_MARK}")
        elif lang == "python":
            parts.append(f"python - <<'{EOF_MARK}'\n{body}{EOF_MARK}")
        elif lang == "bash":
            parts.append(body)
        else:
            raise AssertionError(f"docs/plugins.md line {line}: a ```{lang} block needs file=PATH to be executed")
        parts.append(f"echo '<<< block {i} ok'")
    return "\n".join(parts) + "\n", len(found)


def test_guide_has_the_sections_a_plugin_author_needs():
    text = GUIDE.read_text()
    for heading in ("## 1. A method", "### Hooks", "### `Method`", "### `Outputs` and taps", "### Adapters",
                    "### Hyper-parameters and `--set`", "### Pairs, schedules and datasets", "## 3. Packaging",
                    "## 4. Testing", "## 5. Sinks", "## 6. When a plugin is broken"):
        assert heading in text


def test_csv_sink_example_is_ten_lines():
    body = next(b for _, _, attrs, b in blocks(GUIDE.read_text()) if attrs.get("file") == "csv_sink.py")
    assert len([line for line in body.splitlines() if line.strip()]) == 10


def test_every_hook_in_hookspecs_is_documented():
    from kdbench import hookspecs

    text = GUIDE.read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("kdbench_")]
    assert hooks and all(f"`{h}(" in text for h in hooks)


def test_every_code_block_in_the_guide_runs(tmp_path: Path):
    source, count = script(GUIDE.read_text())
    assert count >= 10
    site = tmp_path / "site"
    work = tmp_path / "work"
    site.mkdir()
    work.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["DOC_SITE"] = str(site)
    env.pop("KDBENCH_CSV", None)
    (tmp_path / "guide.sh").write_text(source)
    proc = subprocess.run(["bash", str(tmp_path / "guide.sh")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800)
    log = proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]
    assert proc.returncode == 0, log
    for i in range(count):
        assert f"<<< block {i} ok" in proc.stdout, log
    assert "rules passed" in proc.stdout  # the kit's reports were printed
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("my-kd")  # the guide's `pip install` did not touch this environment
