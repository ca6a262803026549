"""The record of one cell as a typed object, built in one place for every outcome.

A record starts as a *head* in the driver — the cell's identity, provenance and the
pair's measured costs — so a cell whose worker dies is written with the same
provenance as one that finished. The cell fills in metrics and training results;
`as_dict` gives the JSON keys that `kdbench report` and `kdbench.results` read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .results import IDENTITY_KEYS, cell_id, git_sha, utc_now, versions

#: Fields written even when None (a record without a git sha still says so).
ALWAYS = (*IDENTITY_KEYS, "command", "git_sha", "versions", "created", "status")


@dataclass
class Record:
    # identity: what the cell is (names its file; see kdbench.results.cell_id)
    pair: str
    method: str
    seed: int
    profile: str
    budget: dict[str, Any]
    hparams: dict[str, Any]
    teacher_sha256: str
    scenario: str
    student: str | None = None  # digest of the pair's student_recipe (architecture, init, schedule)
    # provenance: how and where it ran
    command: str = ""
    git_sha: str | None = field(default_factory=git_sha)
    versions: dict[str, str] = field(default_factory=versions)
    created: str = field(default_factory=utc_now)
    dataset: str | None = None
    device: str | None = None
    precision: str | None = None
    channels_last: bool | None = None
    threads: int | None = None
    host: dict[str, Any] | None = None
    teacher_key: str | None = None
    teacher_source: str | None = None  # "shipped" with kdbench, or "trained" into the zoo
    matched: dict[str, Any] | None = None  # time-matched cells: {method, seconds} timed in the same run
    # the pair's costs, measured once per pair
    params: dict[str, int] | None = None
    flops: dict[str, int] | None = None
    latency_ms: dict[str, float] | None = None
    latency_batch: int | None = None
    throughput: dict[str, float] | None = None
    speedup_bs1: float | None = None
    speedup_bsN: float | None = None
    size_bytes: dict[str, int] | None = None
    # the outcome
    status: str = "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    scenario_info: dict[str, Any] | None = None
    curve_eval_examples: int | None = None
    quantized: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    curve: list[dict[str, float]] | None = None
    phases: list[dict[str, Any]] | None = None  # per declared phase: steps, seconds, schedule, final terms
    phase_checks: list[dict[str, Any]] | None = None  # representation check at each phase boundary
    student_init: dict[str, Any] | None = None  # the pre-trained student body's card and cost, if any
    terms: dict[str, float] | None = None
    losses: list[float] | None = None
    wall_seconds: float | None = None
    error: str | None = None
    traceback: str | None = None
    error_at: str | None = None  # "path:line: code" of the innermost frame in the plugin's own files
    failure: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in IDENTITY_KEYS}

    @property
    def cell_id(self) -> str:
        return cell_id(self.identity)

    def set_costs(self, costs: dict[str, Any]) -> None:
        """The pair's params, FLOPs, latency and sizes (see `kdbench.measure.pair_costs`)."""
        self.params = {**costs["params"], "adapters": 0}
        for key in ("flops", "latency_ms", "latency_batch", "throughput", "speedup_bs1", "speedup_bsN"):
            setattr(self, key, costs[key])
        self.size_bytes = costs.get("size_bytes")
        self.quantized = dict(costs.get("quantized") or {"skipped": "not measured"})

    def fail(self, error: str, **details: Any) -> "Record":
        """Mark the cell failed with a one-line `error` (and `traceback=` or `failure=`)."""
        self.status, self.error = "failed", error
        for key, value in details.items():
            setattr(self, key, value)
        return self

    def copy(self) -> "Record":
        return dataclasses.replace(self, metrics=dict(self.metrics),
                                   params=dict(self.params) if self.params is not None else None)

    def as_dict(self) -> dict[str, Any]:
        """The JSON record: every field that is set, plus `cell_id`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name in ALWAYS or getattr(self, f.name) is not None}
        out["cell_id"] = self.cell_id
        return out
