"""Cost of a model: parameters, FLOPs per example, latency (median and IQR) → speedup.

Latency uses `torch.utils.benchmark` (warm-up, a fixed thread count, blocked
autorange; CUDA synchronisation handled by it) at batch 1 and at a large batch.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode


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
