"""Teacher-output cache: the frozen teacher's outputs over the training split, computed once.

On pairs without random augmentation the teacher's output for a training example never
changes, so it is computed once and reused across methods and seeds:

* logits (methods that read only logits): once per (teacher sha256, dataset, profile,
  precision), in fp32, in a checksummed file next to the teacher;
* every other tap a method reads (stage features, hidden states, attentions): once per
  run and (teacher, taps), in memory, in half precision (`TAP_CACHE_DTYPE`; the losses stay
  within 1e-3 relative of the live teacher's, see tests/test_tap_cache.py), up to
  `TAP_CACHE_BYTES`; beyond that, or when the taps' shapes vary from batch to batch, the
  teacher runs live.

Outputs are computed in chunks of the training batch size (the last chunk padded to it),
under the run's forward (autocast, memory format), so each row goes through the same
kernels as in a live forward of a training batch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .accel import Accel
from .api import Method, Outputs, Pair, Splits
from .fsutil import atomic_path
from .outputs import SEQUENCE_DIMS
from .zoo import Teacher, Zoo

#: Taps beyond logits are cached only while they fit in this many bytes.
TAP_CACHE_BYTES = 4 * 2**30
TAP_CACHE_DTYPE = torch.float16


def cacheable(method: Method | type[Method], pair: Pair) -> bool:
    """Whether `method` on `pair` can use cached teacher outputs instead of live forwards."""
    return method.uses_teacher and not pair.augmented


def logits_only(method: Method | type[Method]) -> bool:
    return set(method.needs) <= {"logits"}


def cache_file(zoo: Zoo, teacher: Teacher, splits: Splits, profile: str, precision: str = "fp32") -> Path:
    tag = "" if precision == "fp32" else f"-{precision}"
    return (zoo.root / teacher.card["key"]
            / f"train-logits-{profile}-{splits.fingerprint}-{len(splits.train)}{tag}.safetensors")


@torch.no_grad()
def compute_logits(teacher: Teacher, pair: Pair, splits: Splits, batch_size: int, accel: Accel | None = None) -> Tensor:
    chunks = _chunks(teacher, pair, splits, batch_size, accel, frozenset({"logits"}))
    return torch.cat([out.logits.float() for out in chunks])


def _chunks(teacher: Teacher, pair: Pair, splits: Splits, batch_size: int, accel: Accel | None,
            needs: frozenset[str], dtype: torch.dtype | None = None) -> list[Outputs]:
    """The teacher's outputs over the train split in batches of `batch_size`, the last one
    padded to that size (so every row goes through the kernels of a training batch) and
    cut back to the examples it holds."""
    model, data, n = teacher.model, splits.train, len(splits.train)
    forward = accel.forward(pair.forward) if accel is not None else pair.forward
    model.eval()
    chunks = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, start + batch_size, device=data.y.device).clamp_(max=n - 1)
        out = forward(model, data.index(idx).x, needs)
        chunks.append(out.rows(torch.arange(min(batch_size, n - start)), dtype))
    return chunks


def logits_sha256(logits: Tensor) -> str:
    return hashlib.sha256(logits.cpu().contiguous().numpy().tobytes()).hexdigest()


def teacher_logits(zoo: Zoo, teacher: Teacher, pair: Pair, splits: Splits, profile: str,
                   accel: Accel | None = None) -> Tensor:
    """Cached train-split logits of `teacher`, computed and stored on first use.

    The file records the teacher's sha256 and the logits' own sha256; a cache from
    another teacher, of another size, unreadable, or whose bytes no longer match their
    checksum (a warning says so), is recomputed, never trusted.
    """
    path = cache_file(zoo, teacher, splits, profile, accel.precision if accel is not None else "fp32")
    device = splits.train.y.device
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                logits = fh.get_tensor("logits") if meta.get("teacher_sha256") == teacher.sha256 else None
            if logits is not None and logits.shape[0] == len(splits.train):
                expected = meta.get("logits_sha256")  # absent in caches written before checksums
                if expected == logits_sha256(logits):
                    return logits.to(device)
                if expected is not None:
                    warnings.warn(f"cached teacher logits {path} fail their checksum; recomputing them")
        except Exception:  # noqa: BLE001 - torn file: recompute
            pass
    logits = compute_logits(teacher, pair, splits, pair.schedule(profile).batch_size, accel)
    with atomic_path(path) as tmp:
        save_file({"logits": logits.cpu().contiguous()}, str(tmp),
                  metadata={"teacher_sha256": teacher.sha256, "logits_sha256": logits_sha256(logits)})
    return logits


def _tensors(out: Outputs) -> list[Tensor]:
    return [t for f in dataclasses.fields(out) for v in [getattr(out, f.name)]
            for t in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(t, Tensor)]


class CachedOutputs(Outputs):
    """Teacher outputs of a whole text split: stored padded to the longest chunk, and cut
    back, batch by batch, to the batch's longest example — the length a right-padded
    batch's forward trims to (the `mask` says it)."""

    def rows(self, idx: Tensor, dtype: torch.dtype | None = None) -> Outputs:
        out = super().rows(idx, dtype)
        length = max(int(out.mask.sum(-1).max()), 1) if out.mask is not None else None
        return _resized(out, length) if length is not None else out


def _resized(out: Outputs, length: int) -> Outputs:
    """`out` with every sequence dimension cut, or zero-padded, to `length`."""
    def fit(t: Tensor, dims: tuple[int, ...]) -> Tensor:
        for d in dims:
            if t.shape[d] > length:
                t = t.narrow(d, 0, length)
            elif t.shape[d] < length:
                pad = [0, 0] * (t.dim() - 1 - d) + [0, length - t.shape[d]]
                t = torch.nn.functional.pad(t, pad)
        return t

    def field_of(name: str, v: Any) -> Any:
        dims = SEQUENCE_DIMS.get(name)
        if dims is None or v is None:
            return v
        return [fit(t, dims) for t in v] if isinstance(v, (list, tuple)) else fit(v, dims)

    return type(out)(**{f.name: field_of(f.name, getattr(out, f.name)) for f in dataclasses.fields(Outputs)})


def _stack(chunks: list[Outputs], n: int) -> Outputs | None:
    """The chunks' tensors concatenated example-wise (first `n` rows); text chunks (with a
    mask) as `CachedOutputs`, those of different lengths padded to the longest, so that a
    training batch of any composition (grouped by length, say) comes back at its own
    length; None when other shapes differ."""
    lengths = {int(c.mask.shape[1]) for c in chunks if c.mask is not None}
    if len(lengths) > 1:
        chunks = [_resized(c, max(lengths)) for c in chunks]

    def cat(values: list[Any]) -> Any:
        if values[0] is None:
            return None
        if isinstance(values[0], (list, tuple)):
            return [cat([v[i] for v in values]) for i in range(len(values[0]))]
        if len({tuple(v.shape[1:]) for v in values}) > 1:
            raise ValueError("shapes vary")
        return torch.cat(values)[:n]

    try:
        fields = {f.name: cat([getattr(c, f.name) for c in chunks]) for f in dataclasses.fields(Outputs)}
    except ValueError:
        return None
    return (CachedOutputs if lengths else Outputs)(**fields)


@torch.no_grad()
def teacher_outputs(teacher: Teacher, pair: Pair, splits: Splits, taps: frozenset[str], batch_size: int,
                    accel: Accel | None = None, cap: int | None = None) -> Outputs | None:
    """The teacher's `taps` (and logits, and the text mask) over the train split, in
    `TAP_CACHE_DTYPE`; None when they would take more than `cap` bytes (default
    `TAP_CACHE_BYTES`) or their shapes vary between batches."""
    forward = accel.forward(pair.forward) if accel is not None else pair.forward
    needs, n = frozenset(taps) | {"logits"}, len(splits.train)
    teacher.model.eval()
    first = forward(teacher.model, splits.train.take(batch_size).x, needs)
    per_example = sum(t[0].numel() * (TAP_CACHE_DTYPE.itemsize if t.is_floating_point() else t.element_size())
                      for t in _tensors(first))
    if per_example * n > (TAP_CACHE_BYTES if cap is None else cap):
        return None
    return _stack(_chunks(teacher, pair, splits, batch_size, accel, needs, TAP_CACHE_DTYPE), n)
