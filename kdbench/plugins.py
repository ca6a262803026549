"""Plugin loading: entry points in group ``kdbench`` plus ``--plugin`` modules.

The built-in plugins come through the same entry-point group as third-party ones.
A plugin that fails to import, whose hook raises, that returns malformed objects or
that registers a taken name is recorded as broken (with a message naming it and its
entry point) and never takes the other plugins down with it.
"""
from __future__ import annotations

import copy
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
BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry:
    """One registered method, pair or dataset and where it came from."""

    kind: str
    name: str
    obj: type
    plugin: str
    origin: str  # "built-in", "<package> <version>" or "--plugin <spec>"
    source: str = ""  # how it was found: "entry point NAME = MODULE" or "--plugin SPEC"

    @property
    def description(self) -> str:
        return self.obj.describe() if hasattr(self.obj, "describe") else ""


@dataclass(frozen=True)
class Broken:
    """A plugin (or one of its entries) that could not be used, and why."""

    plugin: str
    origin: str
    error: str


@dataclass(frozen=True)
class _Source:
    """Where a registered plugin came from, for messages."""

    origin: str
    source: str

    def label(self, plugin: str) -> str:
        parts = [p for p in (self.source, self.origin) if p not in (plugin, BUILTIN)]
        parts = list(dict.fromkeys(parts))
        return f"plugin {plugin!r}" + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class Registry:
    """Everything the plugins provide, by kind and name."""

    pm: pluggy.PluginManager
    methods: dict[str, Entry] = field(default_factory=dict)
    pairs: dict[str, Entry] = field(default_factory=dict)
    datasets: dict[str, Entry] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)
    sources: dict[str, _Source] = field(default_factory=dict)

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

    def baselines(self) -> tuple[str, ...]:
        """Methods that declare `baseline`, by rank (then name): the first is the reference."""
        ranked = [(e.obj.baseline, name) for name, e in self.methods.items() if e.obj.baseline is not None]
        return tuple(name for _, name in sorted(ranked))

    def label(self, plugin: str) -> str:
        """'plugin NAME (entry point NAME = MODULE, PACKAGE VERSION)' for messages."""
        src = self.sources.get(plugin)
        return src.label(plugin) if src else f"plugin {plugin!r}"

    def record_written(self, record: dict[str, Any]) -> None:
        """Tell every sink, each with its own copy; a failing sink is a warning, never a lost record."""
        for impl in self.pm.hook.kdbench_record_written.get_hookimpls():
            try:
                impl.function(record=copy.deepcopy(record))
            except Exception as exc:  # noqa: BLE001 - a sink must not stop the grid
                cell = f"{record.get('pair')}/{record.get('method')}/seed{record.get('seed')}"
                warnings.warn(f"{self.label(impl.plugin_name)}: kdbench_record_written failed for {cell} "
                              f"(the record is kept): {type(exc).__name__}: {exc}")


_KINDS = {
    "method": ("kdbench_methods", "methods", Method),
    "pair": ("kdbench_pairs", "pairs", Pair),
    "dataset": ("kdbench_datasets", "datasets", Dataset),
}


def _taps_problem(taps: Any) -> str | None:
    """Why a `needs`/`taps` declaration is unusable, or None."""
    if isinstance(taps, str) or not isinstance(taps, (set, frozenset, list, tuple)):
        return f"must be a set of tap names, not {type(taps).__name__} {taps!r}"
    unknown = set(taps) - TAPS
    if unknown:
        return f"names unknown taps {sorted(unknown)} (known: {sorted(TAPS)})"
    return None


def problem(kind: str, obj: Any) -> str | None:
    """Why `obj` is not a usable `kind` ("method", "pair", "dataset"), or None when it is."""
    base = _KINDS[kind][2]
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        return f"returned {obj!r}, which is not a kdbench.{base.__name__} subclass"
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not name:
        return f"{obj.__name__} has no name (set the class attribute `name`)"
    if kind == "method":
        loss = getattr(obj, "loss", None)
        if not callable(loss):
            return f"method {name!r}: loss is not callable (it is {type(loss).__name__} {loss!r})"
        if loss is Method.loss:
            return f"method {name!r} does not implement loss()"
        if not callable(getattr(obj, "adapters", None)):
            return f"method {name!r}: adapters is not callable"
        why = _taps_problem(obj.needs)
        if why:
            return f"method {name!r}: needs {why}"
        if not isinstance(obj.defaults, dict):
            return f"method {name!r}: defaults must be a dict, not {type(obj.defaults).__name__}"
        if obj.baseline is not None and (not isinstance(obj.baseline, int) or isinstance(obj.baseline, bool)
                                         or obj.baseline < 0):
            return f"method {name!r}: baseline must be None or a rank 0, 1, 2, …, not {obj.baseline!r}"
    if kind == "pair":
        why = _taps_problem(obj.taps)
        if why:
            return f"pair {name!r}: taps {why}"
        if not obj.dataset or not isinstance(obj.dataset, str):
            return f"pair {name!r} names no dataset"
        if not isinstance(obj.schedules, dict) or not obj.schedules:
            return f"pair {name!r} has no schedules (a dict profile -> kdbench.Schedule)"
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


def _entry_points(enabled: bool) -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, built-ins first (so no third party can take a built-in name)."""
    eps: Iterable[importlib.metadata.EntryPoint] = importlib.metadata.entry_points(group=GROUP) if enabled else ()
    return sorted(eps, key=lambda e: (e.dist is None or e.dist.name != BUILTIN_DIST, e.name, e.value))


def _origin(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "unknown package"
    return BUILTIN if dist.name == BUILTIN_DIST else f"{dist.name} {dist.version}"


def _unique_name(pm: pluggy.PluginManager, name: str, origin: str) -> str:
    """Two packages may both call their entry point `dkd`; keep both apart."""
    if not pm.has_plugin(name):
        return name
    return f"{name} [{origin}]"


def _register(pm: pluggy.PluginManager, reg: Registry, module: Any, name: str, src: _Source) -> bool:
    """Register one imported plugin; a hook with a wrong signature makes it broken."""
    if pm.is_registered(module):
        return False
    try:
        pm.register(module, name=name)
    except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError and friends
        reg.broken.append(Broken(name, src.origin, f"{src.label(name)}: could not be registered: "
                                                   f"{type(exc).__name__}: {exc}"))
        return False
    reg.sources[name] = src
    known = [n for n in dir(hookspecs) if n.startswith("kdbench_")]
    for caller in pm.get_hookcallers(module) or []:
        if not caller.has_spec():  # a typo such as `kdbench_method` would silently do nothing
            reg.broken.append(Broken(name, src.origin, f"{src.label(name)}: implements unknown hook "
                                     f"{caller.name!r}" + suggest(caller.name, known, "known hooks: ")))
    return True


def load_registry(extra_plugins: Sequence[str] = (), entry_points: bool = True) -> Registry:
    """Build the registry from the entry-point group and `extra_plugins` modules."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)

    for ep in _entry_points(entry_points):
        origin = _origin(ep)
        name = _unique_name(pm, ep.name, origin)
        src = _Source(origin, f"entry point {ep.name} = {ep.value}")
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the rest
            reg.broken.append(Broken(name, origin, f"{src.label(name)}: import failed: {type(exc).__name__}: {exc}"))
            continue
        _register(pm, reg, module, name, src)

    for spec in extra_plugins:
        try:
            module = _import_plugin(spec)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"--plugin {spec}: import failed: {type(exc).__name__}: {exc}") from None
        name = f"--plugin {spec}"
        _register(pm, reg, module, name, _Source(name, name))

    order = {name: i for i, name in enumerate(reg.sources)}
    for kind, (hook, attr, _base) in _KINDS.items():
        table: dict[str, Entry] = getattr(reg, attr)
        impls = sorted(getattr(pm.hook, hook).get_hookimpls(), key=lambda i: order.get(i.plugin_name, 1 << 30))
        for impl in impls:
            plugin = impl.plugin_name
            src = reg.sources.get(plugin, _Source(plugin, plugin))
            _collect(reg, table, kind, hook, impl.function, plugin, src)
    _drop_pairs_without_dataset(reg)
    return reg


def _collect(reg: Registry, table: dict[str, Entry], kind: str, hook: str, function: Any,
             plugin: str, src: _Source) -> None:
    """Call one plugin's hook and add what it returns to `table`, recording any problem."""
    label = src.label(plugin)

    def broken(msg: str) -> None:
        reg.broken.append(Broken(plugin, src.origin, f"{label}: {msg}"))

    try:
        result = function()
    except Exception as exc:  # noqa: BLE001
        broken(f"{hook}() raised {type(exc).__name__}: {exc}")
        return
    if result is None:
        return
    if isinstance(result, (str, bytes)) or inspect.isclass(result) or not isinstance(result, Iterable):
        broken(f"{hook}() returned {result!r}; expected a list of classes")
        return
    for obj in list(result):
        why = problem(kind, obj)
        if why:
            broken(f"{hook}() {why}")
            continue
        first = table.get(obj.name)
        if first is not None and first.obj is obj:
            continue  # the same class offered twice (e.g. --plugin of an installed module)
        if (kind, obj.name) in reg.conflicts:
            reg.conflicts[(kind, obj.name)] += f"; and also by {label}"
            broken(f"{kind} {obj.name!r} is registered more than once; uninstall or rename all but one")
            continue
        if first is not None:
            other = reg.label(first.plugin)
            if first.origin == BUILTIN and src.origin != BUILTIN:
                broken(f"{kind} {obj.name!r} is a built-in name (from {other}); this one is ignored — rename it")
                continue
            msg = (f"{kind} {obj.name!r} is registered twice: by {other} and by {label}; "
                   f"uninstall or rename one")
            broken(msg)
            reg.conflicts[(kind, obj.name)] = msg
            del table[obj.name]  # ambiguous: usable by neither until one is renamed
            continue
        table[obj.name] = Entry(kind, obj.name, obj, plugin, src.origin, src.source)


def _drop_pairs_without_dataset(reg: Registry) -> None:
    for name, entry in list(reg.pairs.items()):
        dataset = entry.obj.dataset
        if dataset not in reg.datasets and ("dataset", dataset) not in reg.conflicts:
            del reg.pairs[name]
            reg.broken.append(Broken(entry.plugin, entry.origin,
                                     f"{reg.label(entry.plugin)}: pair {name!r} needs dataset {dataset!r}, "
                                     "which no plugin provides" + suggest(dataset, reg.datasets, "known datasets: ")))
