"""Which device models run on, and how: bf16 autocast and channels_last where they help.

`--precision auto` is bf16 autocast on a CUDA GPU that supports it and plain fp32 on
CPU: most CPUs have no bf16 matrix units, where autocast is slower, and fp32 keeps CPU
runs bit-for-bit reproducible. channels_last (NHWC) speeds up convolutions on CUDA
tensor cores, so it is used there for image inputs only. Whatever the precision, the
wrapped forward returns fp32 outputs: every method's loss runs in fp32.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, ContextManager

import torch
from torch import Tensor, nn

from .api import Forward, Outputs
from .errors import UsageError
from .measure import call_model

PRECISIONS = ("auto", "fp32", "bf16")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | None) -> torch.device:
    """`--device` as a torch.device that exists here, or a one-line UsageError saying why not."""
    try:
        device = torch.device(name or default_device())
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is usable here (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: kdbench runs on cpu or cuda, not {device.type}")
    return device


@dataclass(frozen=True)
class Accel:
    """The device and the numeric format the models of one run use."""

    device: torch.device
    bf16: bool = False  # autocast the models' forward passes to bfloat16
    channels_last: bool = False  # NHWC memory format for 4-D (image) inputs and conv weights

    @classmethod
    def choose(cls, device: torch.device, precision: str = "auto") -> "Accel":
        if precision not in PRECISIONS:
            raise UsageError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        cuda = device.type == "cuda"
        if precision == "auto":
            bf16 = cuda and torch.cuda.is_bf16_supported()
        else:
            bf16 = precision == "bf16"
        return cls(device, bf16=bf16, channels_last=cuda)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> dict[str, Any]:
        """What a record says about how its models ran."""
        return {"precision": self.precision, "channels_last": self.channels_last}

    def autocast(self) -> ContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def model(self, module: nn.Module) -> nn.Module:
        """`module` on the device (and in channels_last when that is used)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def inputs(self, x: Any) -> Any:
        if self.channels_last and isinstance(x, Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, forward: Forward) -> Forward:
        """`forward` under autocast and the memory format, returning fp32 outputs."""
        if not (self.bf16 or self.channels_last):
            return forward

        def wrapped(model: nn.Module, inputs: Any, needs: frozenset[str]) -> Outputs:
            with self.autocast():
                out = forward(model, self.inputs(inputs), needs)
            return _fp32(out)

        return wrapped

    def call(self, model: nn.Module, inputs: Any) -> Any:
        """One plain forward call as deployment would make it (for latency)."""
        with self.autocast():
            return call_model(model, self.inputs(inputs))


def _fp32(out: Outputs) -> Outputs:
    def cast(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v.float() if v.is_floating_point() else v
        if isinstance(v, (list, tuple)):
            return [cast(t) for t in v]
        return v

    return Outputs(**{f.name: cast(getattr(out, f.name)) for f in dataclasses.fields(out)})
