"""In-memory tensor datasets: IDX files, fixed validation splits, seeded batching.

Batches are index slices of tensors that already sit on the training device, in an
order fixed by a seeded permutation: no per-sample Python, no DataLoader workers.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .api import Schedule, Splits, TensorData

#: The seed that cuts validation from train. Fixed forever: changing it changes every split.
SPLIT_SEED = 20150309


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or .gz), the MNIST family's format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def find_files(names: Sequence[str], folders: Sequence[Path]) -> Path | None:
    """The first folder holding every file in `names` (each may also be gzipped)."""
    for folder in folders:
        if all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names):
            return folder
    return None


def resolve(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).is_file() else folder / f"{name}.gz"


def data_dirs(data_dir: Path | None, *system: str) -> list[Path]:
    """Search order: --data-dir, $KDBENCH_DATA, then the given system folders."""
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("KDBENCH_DATA"):
        dirs.append(Path(os.environ["KDBENCH_DATA"]))
    return dirs + [Path(s).expanduser() for s in system]


def split_train_val(train: TensorData, val_size: int) -> tuple[TensorData, TensorData]:
    """Carve a fixed validation split from train (same cut on every machine, every run)."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(len(train), generator=g)
    return train.index(perm[val_size:]), train.index(perm[:val_size])


def fingerprint(*tensors: Tensor) -> str:
    """A short sha256 of the data, stored on teacher cards."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def batch_indices(n: int, batch_size: int, seed: int, device: torch.device | str = "cpu",
                  lengths: Tensor | None = None, group: int = 0) -> Iterator[Tensor]:
    """Endless epochs of shuffled index batches, the order fixed by `seed`.

    The last incomplete batch of an epoch is dropped, so every step has the same size.

    With `lengths` and `group` > 0, batches hold examples of similar length (Hugging Face's
    `group_by_length`): each epoch's shuffled order is cut into windows of `group` batches,
    each window is sorted by length and cut into batches, and the epoch's batches are
    shuffled. Which examples share a window stays random, so a batch is still a random
    draw among examples of its length; a model that trims padding to the longest example
    of its batch then computes on far fewer padding tokens.
    """
    g = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=g)
        if lengths is not None and group > 0:
            batches = _grouped(perm[:n - n % batch_size], lengths, batch_size, group)
            batches = batches[torch.randperm(len(batches), generator=g)].to(device)
        else:
            perm = perm.to(device)
            batches = [perm[start:start + batch_size] for start in range(0, n - batch_size + 1, batch_size)]
        yield from batches


def training_batches(data: TensorData, schedule: Schedule, seed: int) -> Iterator[Tensor]:
    """`data`'s training batches as `schedule` draws them: seeded, on `data`'s device, grouped
    by length in windows of `schedule.extra["group_by_length"]` batches when that is set."""
    lengths = None if data.lengths is None else data.lengths.cpu()
    return batch_indices(len(data), schedule.batch_size, seed, data.y.device, lengths=lengths,
                         group=int(schedule.extra.get("group_by_length", 0)))


def _grouped(order: Tensor, lengths: Tensor, batch_size: int, group: int) -> Tensor:
    """`order` (a multiple of `batch_size` long) as a (batches, batch_size) tensor: each
    window of `group` batches sorted by length, longest first (ties keep their order)."""
    window = group * batch_size
    parts = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        parts.append(chunk[torch.argsort(lengths[chunk], descending=True, stable=True)])
    return torch.cat(parts).view(-1, batch_size)


def limit(splits: Splits, train_limit: int | None, eval_limit: int | None) -> Splits:
    """A smaller view of the splits for short profiles (first N of each split)."""
    return Splits(
        train=splits.train.take(train_limit),
        val=splits.val.take(eval_limit),
        test=splits.test.take(eval_limit),
        num_classes=splits.num_classes,
        fingerprint=splits.fingerprint,
    )
