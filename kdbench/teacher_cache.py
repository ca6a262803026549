"""Teacher-output cache: the frozen teacher's logits over the training split, computed once.

For methods that read only logits, on pairs without random augmentation, the teacher's
output for a training example never changes, so it is computed once per (teacher
sha256, dataset, profile, precision) and reused across methods and seeds. Logits are
computed in chunks of the training batch size (the last chunk padded to it), under the
run's forward (autocast, memory format), so each row goes through the same kernels as in
a live forward of a training batch.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .accel import Accel
from .api import Method, Pair, Splits
from .fsutil import atomic_path
from .zoo import Teacher, Zoo


def cacheable(method: Method | type[Method], pair: Pair) -> bool:
    """Whether `method` on `pair` can use cached teacher logits instead of live forwards."""
    return method.uses_teacher and set(method.needs) <= {"logits"} and not pair.augmented


def cache_file(zoo: Zoo, teacher: Teacher, splits: Splits, profile: str, precision: str = "fp32") -> Path:
    tag = "" if precision == "fp32" else f"-{precision}"
    return (zoo.root / teacher.card["key"]
            / f"train-logits-{profile}-{splits.fingerprint}-{len(splits.train)}{tag}.safetensors")


@torch.no_grad()
def compute_logits(teacher: Teacher, pair: Pair, splits: Splits, batch_size: int, accel: Accel | None = None) -> Tensor:
    model, data = teacher.model, splits.train
    forward = accel.forward(pair.forward) if accel is not None else pair.forward
    model.eval()
    chunks = []
    n = len(data)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, start + batch_size, device=data.y.device).clamp_(max=n - 1)
        logits = forward(model, data.index(idx).x, frozenset({"logits"})).logits
        chunks.append(logits[: min(batch_size, n - start)].float())
    return torch.cat(chunks)


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
