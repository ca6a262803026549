"""Where kdbench keeps its files and whether it may use the network (public, for plugins).

Both are read from the environment on every call, so a test or a worker process that
sets `KDBENCH_HOME` or `KDBENCH_OFFLINE` sees its own values.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Either variable set to anything but "" or "0" forbids downloads.
OFFLINE_VARIABLES = ("KDBENCH_OFFLINE", "HF_HUB_OFFLINE")


def kdbench_home() -> Path:
    """`$KDBENCH_HOME`, else ~/.cache/kdbench: teachers, caches and downloaded data."""
    return Path(os.environ.get("KDBENCH_HOME") or "~/.cache/kdbench").expanduser()


def offline() -> bool:
    """Whether downloads are forbidden (`KDBENCH_OFFLINE=1` or Hugging Face's `HF_HUB_OFFLINE=1`)."""
    return any(os.environ.get(v, "") not in ("", "0") for v in OFFLINE_VARIABLES)
