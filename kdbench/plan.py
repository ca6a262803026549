"""What a run will do, decided before anything heavy is loaded: its settings and its cells.

cells = pairs × methods × seeds × scenarios. Every check that can fail on names, taps,
`--set` values, budgets and settings runs here, so a mistake costs no training. The
module imports no torch: `kdbench --help`, `--dry-run` and the CLI's option lists stay
fast (the few checks that need torch or a model import it when they run).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .budget import Budget
from .errors import UsageError, suggest
from .executors import EXECUTORS
from .results import check_name

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Registry

PROFILES = ("smoke", "quick", "standard", "paper")
PRECISIONS = ("auto", "fp32", "bf16")
BUDGET_MODES = ("steps", "time")


@dataclass(frozen=True)
class Cell:
    """One (pair, method, seed, scenario) training run, with its `--set` overrides."""

    pair: str
    method: str
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    scenario: str = "full"  # a name in kdbench.scenarios


@dataclass
class RunConfig:
    """The settings of one `kdbench run`; field names are the CLI's option names."""

    profile: str = "quick"
    out: Path = Path("runs")
    budget_mode: str = "steps"
    budget_steps: int | None = None
    budget_seconds: float | None = None
    budget_scale: float | None = None  # multiplies the profile's step budget (the B/2 convergence check)
    match_seconds: str | None = None  # time mode: each pair gets this method's mean seconds at its step budget
    pair_seconds: dict[str, float] = field(default_factory=dict)  # filled by `Runner.match` in the driver
    device: str | None = None
    precision: str = "auto"  # one of PRECISIONS
    data_dir: Path | None = None
    zoo_root: Path | None = None
    force: bool = False
    fail_fast: bool = False
    progress: bool = True
    command: str = ""
    teacher_cache: bool = True  # cached teacher logits for logits-only methods (see teacher_cache.py)
    jobs: int = 1  # cells run in parallel (forked workers, or Ray tasks)
    threads: int | None = None  # intra-op threads per cell (default: cores / jobs)
    executor: str = "local"  # a key of kdbench.executors.EXECUTORS
    ray_address: str | None = None
    plugins: tuple[str, ...] = ()  # --plugin modules, so Ray workers can rebuild the registry

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.plugins = tuple(self.plugins)
        _one_of("profile", self.profile, PROFILES)
        _one_of("--precision", self.precision, PRECISIONS)
        _one_of("executor", self.executor, EXECUTORS)
        if self.budget_mode == "time" and self.budget_steps is not None:
            raise UsageError("--budget-steps has no effect with --budget-mode time; give one budget, "
                             "--budget-steps N or --budget-mode time --budget-seconds S")
        if self.budget_scale is not None and (self.budget_mode != "steps" or not self.budget_scale > 0):
            raise UsageError(f"--budget-scale {self.budget_scale}: give a positive factor, with the steps budget "
                             "mode (e.g. --budget-scale 0.5 for half of the profile's steps)")
        if self.match_seconds is not None:
            if self.budget_mode != "time" or self.budget_seconds is not None:
                raise UsageError("--match-seconds needs --budget-mode time and no --budget-seconds: the seconds "
                                 "are what the named method takes for its step budget, timed in the same run")
        else:
            Budget(self.budget_mode, self.budget_steps, self.budget_seconds)  # validates all three
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir} is not a folder; give the folder that holds the "
                             "dataset files, or leave it out to use the installed datasets")
        for name in ("jobs", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be at least 1, not {value}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **extra: Any) -> "RunConfig":
        """The config from CLI options named like its fields; other options are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names}, **extra)

    def budget(self, schedule_steps: int, pair: str | None = None) -> Budget:
        """A cell's budget: the run's, else the pair schedule's `schedule_steps` (times
        `budget_scale`); with `match_seconds`, the seconds matched for `pair`."""
        if self.budget_mode == "time":
            seconds = self.pair_seconds.get(pair or "") if self.match_seconds else self.budget_seconds
            if seconds is None:
                raise UsageError(f"no matched seconds for pair {pair!r} yet: a time-matched run times "
                                 f"{self.match_seconds} first (kdbench.runner.Runner.match)")
            return Budget("time", self.budget_steps, seconds)
        steps = self.budget_steps or schedule_steps
        if self.budget_scale is not None:
            steps = max(1, round(steps * self.budget_scale))
        return Budget(self.budget_mode, steps, self.budget_seconds)


def _one_of(what: str, value: str, choices: Sequence[str] | Mapping[str, Any]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}" + suggest(value, choices, "known: "))


def parse_sets(sets: Sequence[str], methods: Sequence[str], registry: "Registry") -> dict[str, dict[str, str]]:
    """`--set method.key=value` → {method: {key: value}}, checked against the defaults."""
    out: dict[str, dict[str, str]] = {}
    for item in sets:
        name, eq, value = item.partition("=")
        method, dot, key = name.strip().rpartition(".")
        if not eq or not dot or not method or not key:
            raise UsageError(f"--set {item!r}: expected METHOD.KEY=VALUE, e.g. hinton.temperature=4")
        cls = registry.method(method).obj
        if key not in cls.defaults:
            raise UsageError(f"--set {item!r}: method {method!r} has no hyper-parameter {key!r}"
                             + suggest(key, cls.defaults, "known: "))
        if method not in methods:
            raise UsageError(f"--set {item!r}: method {method!r} is not in --methods")
        cls(**{key: value})  # type check now, before any training
        out.setdefault(method, {})[key] = value.strip()
    return out


def _checked_names(registry: "Registry", kind: str, names: Sequence[str] | None, every: Sequence[str]) -> list[str]:
    """Named methods or pairs (each must exist and be usable as a folder name), else all of them."""
    chosen = list(dict.fromkeys(names)) if names else sorted(every)
    for name in chosen:
        getattr(registry, kind)(name)
        try:
            check_name(kind, name)  # it becomes a folder under --out
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return chosen


def _pairs_with_profile(registry: "Registry", pair_names: list[str], named: bool, profile: str | None) -> list[str]:
    """Pairs that define `profile`: a named pair without it is an error, an implied one is skipped."""
    if profile is None:
        return pair_names
    if named:
        for p in pair_names:
            registry.pair(p).obj().schedule(profile)
        return pair_names
    return [p for p in pair_names if profile in registry.pair(p).obj.schedules]


def plan(
    registry: "Registry",
    methods: Sequence[str] | None,
    pairs: Sequence[str] | None,
    seeds: int,
    sets: Sequence[str] = (),
    profile: str | None = None,
    scenarios: Sequence[str] = ("full",),
) -> list[Cell]:
    """The cells to run. With no names given: every method × every compatible pair
    (and, given `profile`, only pairs that define it; a named pair without it is an error)."""
    from .scenarios import get as get_scenario

    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {seeds}")
    explicit = bool(methods) and bool(pairs)  # both named: an incompatible combination is an error
    method_names = _checked_names(registry, "method", methods, list(registry.methods))
    pair_names = _checked_names(registry, "pair", pairs, list(registry.pairs))
    overrides = parse_sets(sets, method_names, registry)
    scenario_names = list(dict.fromkeys(scenarios)) or ["full"]
    for name in scenario_names:
        get_scenario(name)
    cells = []
    for p in _pairs_with_profile(registry, pair_names, bool(pairs), profile):
        pair = registry.pair(p).obj
        try:
            registry.dataset(pair.dataset)
        except UsageError as exc:
            raise UsageError(f"pair {p!r}: {exc}") from None
        for m in method_names:
            missing = set(registry.method(m).obj.needs) - set(pair.taps) - {"logits"}
            if missing and explicit:
                raise UsageError(f"method {m!r} needs taps {sorted(missing)} that pair {p!r} does not expose "
                                 f"(it has {sorted(pair.taps)})")
            if not missing:  # the default grid skips incompatible combinations
                hparams = tuple(sorted(overrides.get(m, {}).items()))
                cells += [Cell(p, m, s, hparams, sc) for s in range(seeds) for sc in scenario_names]
    if not cells:
        raise UsageError("no compatible method/pair combination to run")
    return cells


def resumed_match(config: RunConfig, pair: str) -> float | None:
    """The seconds an earlier time-matched run gave `pair`, read from its records in `--out`
    (the latest if several): a resumed run keeps them, so its finished cells still count."""
    from .results import load_records

    folder = Path(config.out) / pair
    records = load_records([folder]) if folder.is_dir() else []
    given = sorted((r.get("created", ""), r["matched"]["seconds"]) for r in records
                   if (r.get("matched") or {}).get("method") == config.match_seconds
                   and r.get("profile") == config.profile)
    return given[-1][1] if given else None


def timing_cells(config: RunConfig, cells: Sequence[Cell]) -> list[Cell]:
    """The `--match-seconds` method's step-budget cells (full data, default hyper-parameters,
    the seeds of `cells`) that a time-matched run runs first, to time them on this machine as it is now."""
    seeds = sorted({c.seed for c in cells})
    return [Cell(pair, str(config.match_seconds), seed) for pair in by_pair(cells) for seed in seeds]


def by_pair(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """Cells grouped by pair, pairs in order of first appearance."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.pair, []).append(c)
    return groups


def describe_plan(registry: "Registry", config: RunConfig, cells: Sequence[Cell]) -> str:
    """What `run` would do, without loading data, training or touching the network."""
    from .zoo import Zoo

    zoo = Zoo(config.zoo_root)
    lines = [f"{len(cells)} cells, profile {config.profile}, out {config.out}"]
    for name, pair_cells in by_pair(cells).items():
        pair = registry.pair(name).obj()
        s = pair.schedule(config.profile)
        if config.match_seconds and name not in config.pair_seconds:
            budget_line = (f"    budget: the seconds {config.match_seconds} takes for its {s.steps} steps, "
                           "timed first in this run")
        else:
            budget = config.budget(s.steps, name)
            budget_line = (f"    budget: {budget.steps} steps" if budget.mode == "steps"
                           else f"    budget: {budget.seconds} s")
        methods = sorted({c.method for c in pair_cells})
        scs = sorted({c.scenario for c in pair_cells})
        lines += [
            f"- {name} (dataset {pair.dataset}): {len(pair_cells)} cells = {len(methods)} methods × "
            f"{len({c.seed for c in pair_cells})} seeds"
            + (f" × {len(scs)} scenarios [{', '.join(scs)}]" if scs != ["full"] else "") + f" [{', '.join(methods)}]",
            budget_line,
            f"    batch {s.batch_size}, lr {s.lr}; teacher: "
            + (status if (status := zoo.status(pair, config.profile)).startswith("shipped")
               else f"{s.teacher_steps} steps, {status}"),
        ]
        lines += [f"    download: {d}" for d in pair.downloads(config.profile)] or ["    download: nothing"]
    return "\n".join(lines)
