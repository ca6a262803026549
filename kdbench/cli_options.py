"""Options and option types the `kdbench` commands share (kept apart so every command
module can import them without importing the others)."""
from __future__ import annotations

from typing import Any, Sequence

import click

from .errors import UsageError, suggest


class Named(click.Choice):
    """A choice among kdbench's own names, refused the way kdbench refuses names."""

    def __init__(self, what: str, choices: Sequence[str]) -> None:
        super().__init__(list(choices))
        self.what = what

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value in self.choices:
            return value
        self.fail(f"unknown {self.what} {value!r}" + suggest(str(value), self.choices, "known: "), param, ctx)


def names(value: str | None, option: str) -> list[str] | None:
    """A comma-separated option as names; None when it was not given (then: all of them)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError(f"{option} {value!r} names nothing; give at least one name, or leave {option} out for all")
    return names


plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="MODULE",
    help="Also load this plugin module (import name or path to a .py file); repeatable.",
)
