"""Errors kdbench reports to users as one line and exit code 2 (no traceback)."""
from __future__ import annotations

import difflib
from typing import Iterable


class UsageError(Exception):
    """A user mistake: bad names, bad values, missing data. Printed as one line, exit 2."""


class DataMissing(UsageError):
    """A dataset's files are not on this machine and cannot be downloaded."""


def suggest(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """'; did you mean X?' for the closest names, or the list of choices when none is close."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if choices:
        return f"; {prefix or 'choose from: '}" + ", ".join(choices)
    return ""
