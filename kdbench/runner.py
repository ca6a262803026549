"""Plan the grid of cells, check it, run it, and write one record per cell.

cells = pairs × methods × seeds. Every check that can fail (names, taps, hyper-
parameters, budgets, folders) runs before any training. Cells whose complete record
already exists under `--out` are skipped, so re-running a command resumes it.
"""
from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from .accel import Accel, resolve_device
from .api import Budget, Method, Pair, Splits
from .data import limit
from .errors import UsageError, suggest
from .fsutil import clean_stale_tmp, writable_dir_problem
from .quantize import quantize_linear, state_dict_bytes
from .measure import count_params, flops_per_example, latency_ms
from .plugins import Registry
from .results import cell_id, check_name, git_sha, host_info, read_record, record_path, versions, write_record
from .train import NumericalFault, accuracy, predict, train
from .executors import EXECUTORS, Task
from .fidelity import agreement, kl_teacher_student
from .scenarios import Scenario, get as get_scenario
from .teacher_cache import cacheable, teacher_logits
from .zoo import Teacher, Zoo

PROFILES = ("smoke", "quick", "standard", "paper")
#: Validation examples behind each budget-curve point (a pair may set `curve_eval_limit` in
#: its schedule's `extra`); the final `val_acc` uses the whole (profile-limited) split.
CURVE_EVAL_LIMIT = 2000
#: Seconds of timed forwards behind each latency (a `blocked_autorange` minimum): smoke
#: numbers only show that measuring works; the leaderboard's need to hold still.
LATENCY_SECONDS = {"smoke": 0.1, "quick": 0.5, "standard": 1.0, "paper": 1.0}


@dataclass(frozen=True)
class Cell:
    pair: str
    method: str
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    scenario: str = "full"  # a name in kdbench.scenarios


@dataclass
class RunConfig:
    profile: str = "quick"
    out: Path = Path("runs")
    budget_mode: str = "steps"
    budget_steps: int | None = None
    budget_seconds: float | None = None
    device: str | None = None
    precision: str = "auto"  # a key of kdbench.accel.PRECISIONS
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
        if self.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.profile!r}" + suggest(self.profile, PROFILES, "known profiles: "))
        Budget(self.budget_mode, self.budget_steps, self.budget_seconds)  # validates
        Accel.choose(resolve_device(self.device), self.precision)  # validates both
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir} is not a folder; give the folder that holds the "
                             "dataset files, or leave it out to use the installed datasets")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, not {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, not {self.threads}")
        if self.executor not in EXECUTORS:
            raise UsageError(f"unknown executor {self.executor!r}" + suggest(self.executor, EXECUTORS, "known: "))
        if self.budget_mode == "time" and self.budget_steps is not None:
            raise UsageError("--budget-steps has no effect with --budget-mode time; give one budget, "
                             "--budget-steps N or --budget-mode time --budget-seconds S")

    def budget(self, schedule_steps: int) -> Budget:
        if self.budget_mode == "time":
            return Budget("time", self.budget_steps, self.budget_seconds)
        return Budget("steps", self.budget_steps or schedule_steps)


@dataclass
class Summary:
    written: list[dict[str, Any]] = field(default_factory=list)
    reused: list[dict[str, Any]] = field(default_factory=list)
    not_run: int = 0  # cells left when --fail-fast stopped the grid

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.reused + self.written

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def parse_sets(sets: Sequence[str], methods: Sequence[str], registry: Registry) -> dict[str, dict[str, str]]:
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


def plan(
    registry: Registry,
    methods: Sequence[str] | None,
    pairs: Sequence[str] | None,
    seeds: int,
    sets: Sequence[str] = (),
    profile: str | None = None,
    scenarios: Sequence[str] = ("full",),
) -> list[Cell]:
    """The cells to run. With no names given: every method × every compatible pair
    (and, given `profile`, only pairs that define it; a named pair without it is an error)."""
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {seeds}")
    explicit = bool(methods) and bool(pairs)  # both named: an incompatible combination is an error
    method_names = list(dict.fromkeys(methods)) if methods else sorted(registry.methods)
    pair_names = list(dict.fromkeys(pairs)) if pairs else sorted(registry.pairs)
    for kind, names, get in (("method", method_names, registry.method), ("pair", pair_names, registry.pair)):
        for name in names:
            get(name)
            try:
                check_name(kind, name)  # it becomes a folder under --out
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    overrides = parse_sets(sets, method_names, registry)
    scenario_names = list(dict.fromkeys(scenarios)) or ["full"]
    for name in scenario_names:
        get_scenario(name)
    cells = []
    if profile is not None:
        if pairs:
            for p in pair_names:
                registry.pair(p).obj().schedule(profile)  # a named pair must have the profile
        else:
            pair_names = [p for p in pair_names if profile in registry.pair(p).obj.schedules]
    for p in pair_names:
        pair = registry.pair(p).obj
        try:
            registry.dataset(pair.dataset)
        except UsageError as exc:
            raise UsageError(f"pair {p!r}: {exc}") from None
        for m in method_names:
            method = registry.method(m).obj
            missing = set(method.needs) - set(pair.taps) - {"logits"}
            if missing:
                if explicit:
                    raise UsageError(
                        f"method {m!r} needs taps {sorted(missing)} that pair {p!r} does not expose "
                        f"(it has {sorted(pair.taps)})"
                    )
                continue  # default grid: skip incompatible combinations
            for s in range(seeds):
                for sc in scenario_names:
                    cells.append(Cell(p, m, s, tuple(sorted(overrides.get(m, {}).items())), sc))
    if not cells:
        raise UsageError("no compatible method/pair combination to run")
    return cells


def describe_plan(registry: Registry, config: RunConfig, cells: Sequence[Cell]) -> str:
    """What `run` would do, without loading data, training or touching the network."""
    zoo = Zoo(config.zoo_root)
    lines = [f"{len(cells)} cells, profile {config.profile}, out {config.out}"]
    by_pair: dict[str, list[Cell]] = {}
    for c in cells:
        by_pair.setdefault(c.pair, []).append(c)
    for name, pair_cells in by_pair.items():
        pair = registry.pair(name).obj()
        s = pair.schedule(config.profile)
        budget = config.budget(s.steps)
        cached = (zoo.folder(pair.teacher_recipe(config.profile)) / "card.json").is_file()
        methods = sorted({c.method for c in pair_cells})
        lines += [
            f"- {name} (dataset {pair.dataset}): {len(pair_cells)} cells = {len(methods)} methods × "
            f"{len({c.seed for c in pair_cells})} seeds"
            + (f" × {len(scs)} scenarios [{', '.join(scs)}]" if (scs := sorted({c.scenario for c in pair_cells})) != ["full"]
               else "") + f" [{', '.join(methods)}]",
            f"    budget: {budget.steps} steps" if budget.mode == "steps" else f"    budget: {budget.seconds} s",
            f"    batch {s.batch_size}, lr {s.lr}; teacher: {s.teacher_steps} steps, "
            + ("cached in the zoo" if cached else "to be trained"),
        ]
        lines += [f"    download: {d}" for d in pair.downloads(config.profile)] or ["    download: nothing"]
    return "\n".join(lines)


class Runner:
    """Runs a grid: each pair prepared once (data, teacher, costs), then every cell."""

    def __init__(self, registry: Registry, config: RunConfig) -> None:
        self.registry = registry
        self.config = config
        self.device = resolve_device(config.device)
        self.accel = Accel.choose(self.device, config.precision)
        self.zoo = Zoo(config.zoo_root)
        self._pairs: dict[str, PairState] = {}  # prepared once per pair, inherited by forked workers

    # -- checks ---------------------------------------------------------------
    def check_out(self) -> None:
        """--out must be a folder we can write in; it is created with the first record."""
        problem = writable_dir_problem(Path(self.config.out))
        if problem:
            raise UsageError(f"--out {self.config.out} is not usable: {problem}")

    def prepare(self) -> None:
        """Checks that need no training (they write nothing), then remove the temporary
        files that a killed run left in --out and the zoo."""
        self.check_out()
        self.zoo.check_writable()
        for root in (Path(self.config.out), self.zoo.root):
            clean_stale_tmp(root)

    # -- pair-level work ------------------------------------------------------
    def data(self, pair: Pair) -> Splits:
        """The pair's dataset, cut to the profile's sizes, on the training device."""
        dataset = self.registry.dataset(pair.dataset).obj()
        splits = dataset.load(self.config.data_dir, **pair.dataset_options(self.config.profile))
        schedule = pair.schedule(self.config.profile)
        return _splits_to(limit(splits, schedule.train_limit, schedule.eval_limit), self.device)

    def teacher(self, pair: Pair, splits: Splits, steps_fraction: float = 1.0) -> Teacher:
        schedule = pair.schedule(self.config.profile)
        bar = tqdm(total=round(schedule.teacher_steps * steps_fraction), desc=f"teacher {pair.name}", leave=False,
                   disable=not self.config.progress)
        try:
            return self.zoo.get(pair, self.config.profile, splits, self.accel, on_step=lambda s, l: bar.update(1),
                                steps_fraction=steps_fraction)
        finally:
            bar.close()

    def costs(self, pair: Pair, teacher: Teacher, splits: Splits) -> dict[str, Any]:
        """Params, FLOPs and latency of teacher and student: the same for every method."""
        torch.manual_seed(0)
        student = self.accel.model(pair.build_student(teacher.model, splits.num_classes))
        seconds = LATENCY_SECONDS[self.config.profile]
        big = pair.schedule(self.config.profile).extra.get("latency_batch", 256)
        x1, xn = pair.example_inputs(splits, 1), pair.example_inputs(splits, big)
        x1, xn = _to(x1, self.device), _to(xn, self.device)
        lat = {}
        for who, model in (("teacher", teacher.model), ("student", student)):
            for tag, x in (("bs1", x1), ("bsN", xn)):
                m = latency_ms(model, x, seconds, call=self.accel.call)
                lat[f"{who}_{tag}"] = m["median"]
                lat[f"{who}_{tag}_iqr"] = m["iqr"]
        batch = _batch_size(xn)
        quantized: dict[str, Any]
        if self.device.type == "cpu":
            q = quantize_linear(student)
            qlat = latency_ms(q, x1, seconds)
            quantized = {"latency_ms_bs1": qlat["median"], "latency_ms_bs1_iqr": qlat["iqr"],
                         "size_bytes": state_dict_bytes(q), "engine": torch.backends.quantized.engine}
        else:
            quantized = {"skipped": f"dynamic int8 quantization runs on CPU only; device is {self.device.type}"}
        return {
            "size_bytes": {"student": state_dict_bytes(student)},
            "quantized": quantized,
            "throughput": {  # examples per second at the large batch
                "teacher": batch / lat["teacher_bsN"] * 1e3, "student": batch / lat["student_bsN"] * 1e3},
            "params": {"teacher": count_params(teacher.model), "student": count_params(student)},
            "flops": {"teacher": flops_per_example(teacher.model, x1), "student": flops_per_example(student, x1)},
            "latency_ms": lat,
            "latency_batch": int(batch),
            "speedup_bs1": lat["teacher_bs1"] / lat["student_bs1"],
            "speedup_bsN": lat["teacher_bsN"] / lat["student_bsN"],
        }

    def pair_state(self, name: str) -> "PairState":
        """Data and teacher of a pair, loaded (and the teacher trained) once per runner."""
        if name not in self._pairs:
            pair = self.registry.pair(name).obj()
            splits = self.data(pair)
            self._pairs[name] = PairState(pair, splits, self.teacher(pair, splits))
        return self._pairs[name]

    def scenario_teacher(self, state: "PairState", scenario: Scenario) -> Teacher:
        """The teacher a scenario distils: the pair's, or a weaker zoo variant (once per pair)."""
        fraction = scenario.teacher_steps_fraction
        if fraction == 1.0:
            return state.teacher
        if fraction not in state.variants:
            state.variants[fraction] = self.teacher(state.pair, state.splits, fraction)
        return state.variants[fraction]

    def cached_logits(self, state: "PairState", method: Method, teacher: Teacher | None = None) -> torch.Tensor | None:
        """The teacher's train logits when `method` may use them (computed once per pair and teacher)."""
        if not (self.config.teacher_cache and cacheable(method, state.pair)):
            return None
        teacher = teacher or state.teacher
        if teacher.sha256 not in state.logits:
            state.logits[teacher.sha256] = teacher_logits(self.zoo, teacher, state.pair, state.splits,
                                                          self.config.profile, self.accel)
        return state.logits[teacher.sha256]

    def teacher_test_logits(self, state: "PairState", teacher: Teacher) -> torch.Tensor:
        """The teacher's test logits, for fidelity metrics (once per pair and teacher)."""
        if teacher.sha256 not in state.test_logits:
            state.test_logits[teacher.sha256] = predict(teacher.model, self.accel.forward(state.pair.forward),
                                                            state.splits.test)
        return state.test_logits[teacher.sha256]

    def execute(self, cell: Cell, identity: dict[str, Any], costs: dict[str, Any]) -> dict[str, Any]:
        """Run one cell of a prepared (or, in a fresh worker, re-loaded) pair."""
        state = self.pair_state(cell.pair)
        method = self.registry.method(cell.method).obj(**dict(cell.hparams))
        teacher = self.scenario_teacher(state, get_scenario(cell.scenario))
        return self.run_cell(cell, state.pair, state.splits, teacher, costs, identity,
                             teacher_logits=self.cached_logits(state, method, teacher),
                             teacher_test_logits=self.teacher_test_logits(state, teacher))

    def failed_record(self, cell: Cell, identity: dict[str, Any], costs: dict[str, Any], error: str) -> dict[str, Any]:
        """The record of a cell whose worker never reported back."""
        return {**identity, "cell_id": cell_id(identity), "status": "failed", "error": error,
                "command": self.config.command, "git_sha": git_sha(), "versions": versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # -- cells ----------------------------------------------------------------
    def identity(self, cell: Cell, pair: Pair, teacher_sha: str) -> dict[str, Any]:
        schedule = pair.schedule(self.config.profile)
        method = self.registry.method(cell.method).obj(**dict(cell.hparams))
        return {
            "pair": cell.pair,
            "method": cell.method,
            "seed": cell.seed,
            "profile": self.config.profile,
            "budget": self.config.budget(schedule.steps).as_dict(),
            "hparams": vars(method.hp),
            "teacher_sha256": teacher_sha,
            "scenario": cell.scenario,
        }

    def quantized_metrics(self, student: torch.nn.Module, pair: Pair, splits: Splits,
                          teacher_test_logits: torch.Tensor, costs: dict[str, Any]) -> dict[str, Any]:
        """Test accuracy and fidelity of the int8-quantized student, plus the pair's
        quantized latency and size (see kdbench/quantize.py); a note when skipped."""
        measured = dict(costs.get("quantized") or {"skipped": "not measured"})
        if "skipped" in measured:
            return measured
        logits = predict(quantize_linear(student), pair.forward, splits.test.to("cpu"))
        measured.update(test_acc=accuracy(logits, splits.test.y.cpu()),
                        agreement=agreement(logits, teacher_test_logits.cpu()))
        return measured

    def init_student(self, pair: Pair, teacher: Teacher, splits: Splits, seed: int) -> torch.nn.Module:
        """The student at `seed`: the same initial weights for every method (paired comparisons)."""
        torch.manual_seed(seed)
        return self.accel.model(pair.build_student(teacher.model, splits.num_classes))

    def run_cell(self, cell: Cell, pair: Pair, splits: Splits, teacher: Teacher,
                 costs: dict[str, Any], identity: dict[str, Any],
                 teacher_logits: torch.Tensor | None = None,
                 teacher_test_logits: torch.Tensor | None = None) -> dict[str, Any]:
        """Train and evaluate one cell. `teacher_logits` are the cached logits over the
        whole train split; the scenario's subset of them is taken here."""
        schedule = pair.schedule(self.config.profile)
        method: Method = self.registry.method(cell.method).obj(**dict(cell.hparams))
        scenario = get_scenario(cell.scenario)
        forward = self.accel.forward(pair.forward)
        started = time.perf_counter()
        record: dict[str, Any] = {
            **identity,
            "cell_id": cell_id(identity),
            "dataset": pair.dataset,
            "device": str(self.device),
            **self.accel.describe(),
            "threads": torch.get_num_threads(),
            "versions": versions(),
            "git_sha": git_sha(),
            "command": self.config.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "params": {**costs["params"], "adapters": 0},
            "flops": costs["flops"],
            "latency_ms": costs["latency_ms"],
            "latency_batch": costs["latency_batch"],
            "throughput": costs["throughput"],
            "host": host_info(self.device),
            "speedup_bs1": costs["speedup_bs1"],
            "speedup_bsN": costs["speedup_bsN"],
            "size_bytes": costs.get("size_bytes"),
            "metrics": {"teacher_test_acc": teacher.card["test_acc"]},
            "teacher_key": teacher.card.get("key"),
        }
        bar = tqdm(desc=f"{cell.pair}/{cell.method}/seed{cell.seed}", total=identity["budget"]["steps"],
                   leave=False, disable=not self.config.progress)
        try:
            student_data = scenario.apply(splits.train, splits.num_classes, cell.seed)
            record["scenario_info"] = student_data.info
            if teacher_logits is not None and student_data.indices is not None:
                teacher_logits = teacher_logits[student_data.indices.to(teacher_logits.device)]
            train_split = student_data.data
            student = self.init_student(pair, teacher, splits, cell.seed)
            use_teacher = method.uses_teacher
            live_teacher = use_teacher and teacher_logits is None
            adapters = None
            sample = train_split.take(schedule.batch_size)
            torch.manual_seed(cell.seed + 1)
            s_out = forward(student, sample.x, frozenset(method.needs) | {"logits"})
            with torch.no_grad():
                t_out = forward(teacher.model, sample.x, frozenset(method.needs) | {"logits"}) if use_teacher else None
            adapters = method.adapters(s_out.detach(), t_out)
            if adapters is not None:
                adapters = self.accel.model(adapters)
            record["params"]["adapters"] = count_params(adapters)
            torch.manual_seed(cell.seed + 2)
            curve_val = splits.val.take(schedule.extra.get("curve_eval_limit", CURVE_EVAL_LIMIT))
            record["curve_eval_examples"] = len(curve_val)
            result = train(
                student, method, train_split, self.config.budget(schedule.steps), schedule, forward,
                seed=cell.seed, teacher=teacher.model if live_teacher else None, adapters=adapters,
                teacher_logits=teacher_logits if use_teacher else None,
                on_step=lambda s, l: bar.update(1),
                evaluate=lambda: accuracy(predict(student, forward, curve_val), curve_val.y),
            )
            test_logits = predict(student, forward, splits.test)
            test_acc = accuracy(test_logits, splits.test.y)
            val_acc = accuracy(predict(student, forward, splits.val), splits.val.y)
            if teacher_test_logits is None:
                teacher_test_logits = predict(teacher.model, forward, splits.test)
            record["metrics"].update({
                "test_acc": test_acc, "val_acc": val_acc,
                "agreement": agreement(test_logits, teacher_test_logits),
                "kl_teacher_student": kl_teacher_student(teacher_test_logits, test_logits),
            })
            record["quantized"] = self.quantized_metrics(student, pair, splits, teacher_test_logits, costs)
            record["train"] = {
                "steps": result.steps,
                "seconds": round(result.seconds, 4),
                "teacher_seconds": round(result.teacher_seconds, 4),
                "teacher": ("live" if live_teacher else "cached") if use_teacher else "none",
            }
            record["curve"] = result.curve
            record["terms"] = result.terms
            record["losses"] = [round(v, 6) for v in result.losses]
            record["status"] = "ok"
        except NumericalFault as exc:
            record.update(status="failed", error=str(exc), failure={"step": exc.step, "term": exc.term})
        except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the grid
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=6))
        finally:
            bar.close()
        record["wall_seconds"] = round(time.perf_counter() - started, 3)
        return record

    def run(self, cells: Sequence[Cell]) -> Summary:
        """Prepare every pair (data, teacher, costs, caches), then hand all cells to the
        executor at once: workers never wait for a pair boundary, and every latency is
        measured before any worker starts, on an otherwise idle machine."""
        self.prepare()
        summary = Summary()
        by_pair: dict[str, list[Cell]] = {}
        for c in cells:
            by_pair.setdefault(c.pair, []).append(c)
        grid = tqdm(total=len(cells), desc="grid", disable=not self.config.progress)
        try:
            tasks = [task for name, pair_cells in by_pair.items()
                     for task in self.pair_tasks(name, pair_cells, summary, grid)]
            if not tasks:
                return summary
            records = EXECUTORS[self.config.executor](self, tasks)
            for record in records:
                write_record(self.config.out, record)
                self.registry.record_written(record)
                summary.written.append(record)
                grid.update(1)
                if record["status"] != "ok" and self.config.fail_fast:
                    records.close()
                    summary.not_run = len(cells) - len(summary.records)
                    return summary
        finally:
            grid.close()
        return summary

    def pair_tasks(self, name: str, cells: Sequence[Cell], summary: Summary, grid: Any) -> list[Task]:
        """The cells of one pair still to run, with their identity and the pair's costs;
        cells with a complete record go to `summary.reused`. Loads (or trains) what the
        cells share — data, teachers, cached logits — before any worker is forked."""
        state = self.pair_state(name)
        todo = []
        for cell in cells:
            teacher = self.scenario_teacher(state, get_scenario(cell.scenario))
            identity = self.identity(cell, state.pair, teacher.sha256)
            existing = _complete(record_path(self.config.out, identity))
            if existing is not None and not self.config.force:
                summary.reused.append(existing)
                grid.update(1)
            else:
                todo.append((cell, identity))
        if not todo:
            return []
        costs = self.costs(state.pair, state.teacher, state.splits)
        for cell, _ in todo:  # before any fork, so workers inherit the caches
            teacher = self.scenario_teacher(state, get_scenario(cell.scenario))
            self.cached_logits(state, self.registry.method(cell.method).obj(**dict(cell.hparams)), teacher)
            self.teacher_test_logits(state, teacher)
        return [(cell, identity, costs) for cell, identity in todo]


@dataclass
class PairState:
    """What every cell of a pair shares: the pair, its data, its teacher, cached logits."""

    pair: Pair
    splits: Splits
    teacher: Teacher
    logits: dict[str, torch.Tensor] = field(default_factory=dict)  # teacher sha256 → cached train logits
    test_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # teacher sha256 → test logits
    variants: dict[float, Teacher] = field(default_factory=dict)  # steps fraction → weaker teacher


def _complete(path: Path) -> dict[str, Any] | None:
    """The `ok` record at `path`, or None: the cell must run (again)."""
    if not path.is_file():
        return None
    try:
        record = read_record(path)
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring {path}: {exc}; the cell runs again")
        return None
    return record if record.get("status") == "ok" else None


def _to(x: Any, device: torch.device) -> Any:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)


def _batch_size(x: Any) -> int:
    return next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]


def _splits_to(splits: Splits, device: torch.device) -> Splits:
    return Splits(splits.train.to(device), splits.val.to(device), splits.test.to(device),
                  splits.num_classes, splits.fingerprint)
