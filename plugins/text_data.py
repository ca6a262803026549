"""Shared by the text datasets: tokenise once, cache the tensors on disk, cut the splits.

Tokenising WordNet's 117k glosses takes tens of seconds on two cores, so a dataset
tokenises each (source data, tokenizer, max_len, limits) once per machine and stores
the tensors as safetensors under `$KDBENCH_HOME/data/<dataset>/`, named by a hash of
all of those and written atomically; later loads read that file. Nothing is cached in
process memory.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from kdbench import Splits, TensorData, UsageError, kdbench_home
from kdbench.fsutil import atomic_path, sha256_file

#: Bump when the layout of the cached tensors changes.
CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
#: Files that define a Hugging Face tokenizer (whichever exist in its folder).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def tokenizer_id(tokenizer: str) -> str:
    """A stable identity for a tokenizer: its files' sha256 for a folder, else the hub id."""
    folder = Path(tokenizer)
    if not folder.is_dir():
        return tokenizer
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            h.update(name.encode() + sha256_file(folder / name).encode())
    return "files:" + h.hexdigest()[:16]


def encode(texts: Sequence[str], tok: Any, max_len: int) -> dict[str, Tensor]:
    """`input_ids` and `attention_mask` (int64, right-padded to `max_len`, truncated)."""
    enc = tok(list(texts), truncation=True, max_length=max_len, padding="max_length", return_tensors="pt")
    return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}


def cached_tensors(dataset: str, key: dict[str, Any], build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """`build()`'s tensors, read from `$KDBENCH_HOME/data/<dataset>/<hash of key>` when there."""
    digest = hashlib.sha256(json.dumps({**key, "v": CACHE_VERSION}, sort_keys=True).encode()).hexdigest()[:20]
    path = kdbench_home() / "data" / dataset / f"tokenized-{digest}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - a torn or foreign file is rebuilt, never trusted
            pass
    tensors = {k: v.contiguous() for k, v in build().items()}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
    except OSError:  # a read-only home only costs the next run the tokenisation
        pass
    return tensors


def tokenized_splits(
    texts: dict[str, Sequence[str]],
    labels: dict[str, Sequence[int]],
    tokenizer: str,
    max_len: int,
    eval_by_length: bool,
) -> dict[str, Tensor]:
    """Tokenise each split into flat tensors `<split>.input_ids`, `.attention_mask`, `.y`.

    With `eval_by_length`, val and test are reordered by token count (shortest first)
    so evaluation batches, trimmed to their longest example, carry little padding.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    out: dict[str, Tensor] = {}
    for split in SPLITS:
        enc = encode(texts[split], tok, max_len)
        y = torch.tensor(list(labels[split]), dtype=torch.long)
        if eval_by_length and split != "train":
            order = torch.argsort(enc["attention_mask"].sum(1), stable=True)
            enc, y = {k: v[order] for k, v in enc.items()}, y[order]
        out.update({f"{split}.{k}": v for k, v in enc.items()})
        out[f"{split}.y"] = y
    return out


def as_splits(tensors: dict[str, Tensor], num_classes: int) -> Splits:
    """The flat cached tensors back as `Splits` (x a dict of token tensors; each example's
    token count as its `lengths`)."""
    parts = {}
    for split in SPLITS:
        x = {k: tensors[f"{split}.{k}"] for k in ("input_ids", "attention_mask")}
        parts[split] = TensorData(x, tensors[f"{split}.y"], x["attention_mask"].sum(1))
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].numpy().tobytes())
    return Splits(parts["train"], parts["val"], parts["test"], num_classes, h.hexdigest()[:16])


def require_tokenizer(dataset: str, tokenizer: str | None) -> str:
    if not tokenizer:
        raise UsageError(f"dataset {dataset!r} needs a tokenizer (a Hugging Face folder or hub id); "
                         "a text pair passes its teacher's through dataset_options")
    return tokenizer
