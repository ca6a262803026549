"""Dataset `sst2`: GLUE SST-2 movie-review sentences, positive/negative (online only).

Loaded through Hugging Face `datasets` (the optional extra `kdbench[sst2]`) from
`nyu-mll/glue`, config `sst2`. GLUE hides the test labels, so the published
validation split (872 sentences) is kdbench's test split, and a fixed 872-sentence
validation split is cut from train (66,477 left to train on). With
`KDBENCH_OFFLINE`/`HF_HUB_OFFLINE` set, or without `datasets`, or when the download
fails, loading stops with one line that says so; the offline text dataset is
`wordnet-supersense`. Tokenised like it (see `text_data`).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Sequence

from kdbench import DataMissing, Dataset, Splits, hookimpl, offline

from .text_data import as_splits, cached_tensors, require_tokenizer, tokenized_splits, tokenizer_id

HUB_ID, CONFIG = "nyu-mll/glue", "sst2"
VAL_SIZE = 872
SPLIT_SEED = 20150309


def has_datasets() -> bool:
    return importlib.util.find_spec("datasets") is not None


def fetch() -> tuple[list[str], list[int], list[str], list[int]]:
    """(train sentences, labels, test sentences, labels) from the Hugging Face hub."""
    if offline():
        raise DataMissing("dataset sst2 needs internet (Hugging Face datasets) but KDBENCH_OFFLINE/HF_HUB_OFFLINE "
                          "is set; use wordnet-supersense offline")
    if not has_datasets():
        raise DataMissing("dataset sst2 needs the Hugging Face `datasets` package and internet: "
                          "pip install 'kdbench[sst2]'")
    import datasets

    try:
        ds = datasets.load_dataset(HUB_ID, CONFIG)
    except Exception as exc:  # noqa: BLE001 - any network or hub failure
        raise DataMissing(f"dataset sst2 could not be downloaded from the Hugging Face hub "
                          f"({type(exc).__name__}); it needs internet on first use") from None
    train, test = ds["train"], ds["validation"]
    return list(train["sentence"]), list(train["label"]), list(test["sentence"]), list(test["label"])


def split_train(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[int], list[int]]:
    """Fixed (train, val) index lists: val is the VAL_SIZE sentences with the smallest hashes."""
    def key(i: int) -> bytes:
        return hashlib.sha256(f"{SPLIT_SEED}:{i}:{texts[i]}".encode()).digest()

    order = sorted(range(len(texts)), key=key)
    return order[VAL_SIZE:], order[:VAL_SIZE]


class SST2(Dataset):
    """GLUE SST-2 sentiment (2 classes); 66.5k/872/872; needs internet and `datasets`."""

    name = "sst2"
    num_classes = 2

    def load(self, data_dir: Path | None = None, *, tokenizer: str | None = None, max_len: int = 64,
             train_limit: int | None = None, eval_limit: int | None = None,
             eval_by_length: bool = False, **options: Any) -> Splits:
        tokenizer = require_tokenizer(self.name, tokenizer)
        x_train, y_train, x_test, y_test = fetch()
        h = hashlib.sha256()
        for text, label in zip(x_train + x_test, y_train + y_test):
            h.update(f"{label}\t{text}\n".encode())
        key = {"data": h.hexdigest(), "tokenizer": tokenizer_id(tokenizer), "max_len": max_len,
               "train_limit": train_limit, "eval_limit": eval_limit, "eval_by_length": eval_by_length}

        def build() -> dict[str, Any]:
            tr, va = split_train(x_train, y_train)
            tr, va = tr[:train_limit], va[:eval_limit]
            texts = {"train": [x_train[i] for i in tr], "val": [x_train[i] for i in va], "test": x_test[:eval_limit]}
            labels = {"train": [y_train[i] for i in tr], "val": [y_train[i] for i in va], "test": y_test[:eval_limit]}
            return tokenized_splits(texts, labels, tokenizer, max_len, eval_by_length)

        return as_splits(cached_tensors(self.name, key, build), self.num_classes)


@hookimpl
def kdbench_datasets() -> list[type]:
    return [SST2]
