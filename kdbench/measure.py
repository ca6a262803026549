"""Cost of a model: parameters, FLOPs per example, latency (median and IQR) → speedup.

Latency uses `torch.utils.benchmark` (warm-up, a fixed thread count, blocked
autorange; CUDA synchronisation handled by it) at batch 1 and at a large batch, the
teacher and the student measured in alternating rounds, each keeping its fastest
round's median (a speedup is a ratio measured side by side, not across runs).
`pair_costs` measures a teacher and its student once per pair, for every method.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from .quantize import quantize_linear, state_dict_bytes

#: Seconds of timed forwards behind each latency (a `blocked_autorange` minimum): smoke
#: numbers only show that measuring works; the leaderboard's need to hold still.
LATENCY_SECONDS = {"smoke": 0.1, "quick": 0.5, "standard": 1.0, "paper": 1.0}


#: Rounds of (teacher, student) × (batch 1, batch N) latencies; each keeps its least-disturbed
#: round's median: another process taking the cores for a moment slows one round, not all.
LATENCY_ROUNDS = 4


def count_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def call_model(model: nn.Module, inputs: Any) -> Any:
    """`model(inputs)`, or `model(**inputs)` for text inputs (a dict of tensors)."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


@torch.no_grad()
def flops_per_example(model: nn.Module, inputs: Any) -> int:
    """Forward FLOPs for one example, counted by `torch.utils.flop_counter`."""
    model.eval()
    batch = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    counter = FlopCounterMode(display=False)
    with counter:
        call_model(model, inputs)
    return int(counter.get_total_flops() // max(batch, 1))


@torch.no_grad()
def latency_ms(model: nn.Module, inputs: Any, min_run_time: float = 0.5,
               call: Callable[[nn.Module, Any], Any] = call_model) -> dict[str, float]:
    """Median and interquartile range of one forward pass (`call(model, inputs)`), in milliseconds."""
    model.eval()
    for _ in range(3):  # warm-up (lazy init, allocator, autotuning)
        call(model, inputs)
    timer = benchmark.Timer(
        stmt="call(model, inputs)",
        globals={"call": call, "model": model, "inputs": inputs},
        num_threads=torch.get_num_threads(),
    )
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return {"median": m.median * 1e3, "iqr": m.iqr * 1e3}


def _batch_size(x: Any) -> int:
    return next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]


def pair_costs(teacher: nn.Module, student: nn.Module, x1: Any, xn: Any, seconds: float,
               call: Callable[[nn.Module, Any], Any] = call_model, int8_skipped: str | None = None) -> dict[str, Any]:
    """Params, FLOPs, latency at batch 1 (`x1`) and batch N (`xn`), throughput and sizes of
    a teacher and its student, and of the dynamically quantized student unless
    `int8_skipped` says why not (it runs on CPU only)."""
    lat: dict[str, float] = {}
    for _ in range(LATENCY_ROUNDS):  # teacher and student side by side, round after round
        for who, model in (("teacher", teacher), ("student", student)):
            for tag, x in (("bs1", x1), ("bsN", xn)):
                m = latency_ms(model, x, seconds / LATENCY_ROUNDS, call=call)
                if m["median"] < lat.get(f"{who}_{tag}", float("inf")):
                    lat[f"{who}_{tag}"], lat[f"{who}_{tag}_iqr"] = m["median"], m["iqr"]
    batch = _batch_size(xn)
    quantized: dict[str, Any]
    if int8_skipped is None:
        q = quantize_linear(student)
        qlat = latency_ms(q, x1, seconds)
        quantized = {"latency_ms_bs1": qlat["median"], "latency_ms_bs1_iqr": qlat["iqr"],
                     "size_bytes": state_dict_bytes(q), "engine": torch.backends.quantized.engine}
    else:
        quantized = {"skipped": int8_skipped}
    return {
        "size_bytes": {"student": state_dict_bytes(student)},
        "quantized": quantized,
        "throughput": {  # examples per second at the large batch
            "teacher": batch / lat["teacher_bsN"] * 1e3, "student": batch / lat["student_bsN"] * 1e3},
        "params": {"teacher": count_params(teacher), "student": count_params(student)},
        "flops": {"teacher": flops_per_example(teacher, x1), "student": flops_per_example(student, x1)},
        "latency_ms": lat,
        "latency_batch": int(batch),
        "speedup_bs1": lat["teacher_bs1"] / lat["student_bs1"],
        "speedup_bsN": lat["teacher_bsN"] / lat["student_bsN"],
    }
