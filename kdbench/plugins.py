"""Plugin loading: entry points in group ``kdbench`` plus ``--plugin`` modules.

The built-in plugins come through the same entry-point group as third-party ones.
A plugin that fails to import, whose hook raises, that returns malformed objects or
that registers a taken name is recorded as broken (with a message naming it and its
entry point) and never takes the other plugins down with it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pluggy

from . import hookspecs
from .api import TAPS, Dataset, Method, Pair
from .errors import UsageError, suggest

GROUP = "kdbench"
BUILTIN_DIST = "kdbench"


@dataclass(frozen=True)
class Entry:
    """One registered method, pair or dataset and where it came from."""

    kind: str
    name: str
    obj: type
    plugin: str
    origin: str

    @property
    def description(self) -> str:
        return self.obj.describe() if hasattr(self.obj, "describe") else ""


@dataclass(frozen=True)
class Broken:
    """A plugin (or one of its entries) that could not be used, and why."""

    plugin: str
    origin: str
    error: str


@dataclass
class Registry:
    """Everything the plugins provide, by kind and name."""

    pm: pluggy.PluginManager
    methods: dict[str, Entry] = field(default_factory=dict)
    pairs: dict[str, Entry] = field(default_factory=dict)
    datasets: dict[str, Entry] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)

    def _get(self, kind: str, table: dict[str, Entry], name: str) -> Entry:
        if (kind, name) in self.conflicts:
            raise UsageError(self.conflicts[(kind, name)])
        if name not in table:
            raise UsageError(f"unknown {kind} {name!r}" + suggest(name, table, f"known {kind}s: "))
        return table[name]

    def method(self, name: str) -> Entry:
        return self._get("method", self.methods, name)

    def pair(self, name: str) -> Entry:
        return self._get("pair", self.pairs, name)

    def dataset(self, name: str) -> Entry:
        return self._get("dataset", self.datasets, name)

    def record_written(self, record: dict[str, Any]) -> None:
        """Tell every sink; a failing sink is a warning, never a lost record."""
        for impl in self.pm.hook.kdbench_record_written.get_hookimpls():
            try:
                impl.function(record=record)
            except Exception as exc:  # noqa: BLE001 - a sink must not stop the grid
                warnings.warn(f"plugin {impl.plugin_name!r}: kdbench_record_written failed: {exc}")


_KINDS = {
    "method": ("kdbench_methods", "methods", Method),
    "pair": ("kdbench_pairs", "pairs", Pair),
    "dataset": ("kdbench_datasets", "datasets", Dataset),
}


def _problem(kind: str, obj: Any) -> str | None:
    """Why `obj` is not a usable `kind`, or None when it is."""
    base = _KINDS[kind][2]
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        return f"returned {obj!r}, which is not a kdbench.{base.__name__} subclass"
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not name:
        return f"{obj.__name__} has no name"
    if kind == "method":
        if not callable(getattr(obj, "loss", None)) or obj.loss is Method.loss:
            return f"method {name!r} does not implement loss()"
        unknown = set(obj.needs) - TAPS
        if unknown:
            return f"method {name!r} needs unknown taps {sorted(unknown)} (known: {sorted(TAPS)})"
        if not isinstance(obj.defaults, dict):
            return f"method {name!r}: defaults must be a dict"
    if kind == "pair":
        unknown = set(obj.taps) - TAPS
        if unknown:
            return f"pair {name!r} exposes unknown taps {sorted(unknown)} (known: {sorted(TAPS)})"
        if not obj.dataset:
            return f"pair {name!r} names no dataset"
    if kind == "dataset" and obj.load is Dataset.load:
        return f"dataset {name!r} does not implement load()"
    return None


def _import_plugin(spec: str) -> Any:
    """Import `--plugin` as a module name or a path to a .py file."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise UsageError(f"--plugin {spec}: no such file")
        mod_name = f"kdbench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    return importlib.import_module(spec)


def load_registry(extra_plugins: Sequence[str] = (), entry_points: bool = True) -> Registry:
    """Build the registry from the entry-point group and `extra_plugins` modules."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    origins: dict[str, str] = {}

    eps: Iterable[importlib.metadata.EntryPoint] = (
        importlib.metadata.entry_points(group=GROUP) if entry_points else ()
    )
    # built-ins first, so a third-party plugin cannot shadow a built-in name
    for ep in sorted(eps, key=lambda e: (e.dist is None or e.dist.name != BUILTIN_DIST, e.name)):
        dist = ep.dist
        origin = "built-in" if dist and dist.name == BUILTIN_DIST else (
            f"{dist.name} {dist.version}" if dist else "unknown package"
        )
        label = f"entry point {ep.name!r} ({ep.value})"
        try:
            module = ep.load()
            if pm.is_registered(module):
                continue
            pm.register(module, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the rest
            reg.broken.append(Broken(ep.name, origin, f"{label}: import failed: {type(exc).__name__}: {exc}"))
            continue
        origins[ep.name] = origin

    for spec in extra_plugins:
        try:
            module = _import_plugin(spec)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"--plugin {spec}: import failed: {type(exc).__name__}: {exc}") from None
        if not pm.is_registered(module):
            pm.register(module, name=f"--plugin {spec}")
            origins[f"--plugin {spec}"] = f"--plugin {spec}"

    order = {name: i for i, name in enumerate(origins)}
    for kind, (hook, attr, _base) in _KINDS.items():
        table: dict[str, Entry] = getattr(reg, attr)
        impls = sorted(getattr(pm.hook, hook).get_hookimpls(), key=lambda i: order.get(i.plugin_name, 1 << 30))
        for impl in impls:
            plugin, origin = impl.plugin_name, origins.get(impl.plugin_name, impl.plugin_name)
            try:
                objs = list(impl.function() or [])
            except Exception as exc:  # noqa: BLE001
                reg.broken.append(Broken(plugin, origin, f"plugin {plugin!r}: {hook}() raised {type(exc).__name__}: {exc}"))
                continue
            for obj in objs:
                problem = _problem(kind, obj)
                if problem:
                    reg.broken.append(Broken(plugin, origin, f"plugin {plugin!r}: {hook}() {problem}"))
                    continue
                if obj.name in table:
                    first = table[obj.name]
                    msg = (f"{kind} {obj.name!r} is registered twice: by plugin {first.plugin!r} ({first.origin}) "
                           f"and by plugin {plugin!r} ({origin}); uninstall or rename one")
                    reg.broken.append(Broken(plugin, origin, msg))
                    reg.conflicts[(kind, obj.name)] = msg
                    continue
                table[obj.name] = Entry(kind, obj.name, obj, plugin, origin)
    return reg
