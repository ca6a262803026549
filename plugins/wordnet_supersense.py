"""Dataset `wordnet-supersense`: WordNet 3.0 glosses labelled with their supersense.

Real English text that is on the machine offline: every synset's gloss (its
definition and usage examples, e.g. "a member of the genus Canis ...; "the dog
barked all night"") is labelled with the synset's lexicographer file, its
*supersense* (`noun.animal`, `verb.motion`, `adj.all`, ...): 45 classes, from
14,435 glosses (`adj.all`) down to 42 (`noun.motive`).

The database files `data.noun`, `data.verb`, `data.adj` and `data.adv` are read from,
in order: `--data-dir`, `$KDBENCH_WORDNET`, `$KDBENCH_DATA`, `/usr/share/wordnet`
(Debian `wordnet-base`), then an NLTK WordNet corpus (`corpora/wordnet/` or
`corpora/wordnet.zip` under `$NLTK_DATA`, `~/nltk_data`, `/usr/share/nltk_data`,
`/usr/local/share/nltk_data`).

Split: by a hash of the synset id (`<offset>-<pos>`): 80% train, 10% validation,
10% test, the same on every machine (WordNet 3.0: 117,659 synsets → 93,995 train,
11,773 val, 11,891 test); within a split, examples are in hash order, so the first N
are a uniform sample. Texts are tokenised with the tokenizer the pair passes
(`tokenizer=`, `max_len=`), once per machine (see `text_data`); `train_limit` /
`eval_limit` tokenise only the first N of each split.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from kdbench import DataMissing, Dataset, Splits, hookimpl

from .text_data import as_splits, cached_tensors, require_tokenizer, tokenized_splits, tokenizer_id

POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
#: WordNet's lexicographer files, by number (lexnames(5WN)); the class index is the number.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
SYSTEM_DIR = "/usr/share/wordnet"
NLTK_DIRS = ("~/nltk_data", "/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data")
FRACTIONS = (0.8, 0.9)  # cumulative: train below 0.8, val below 0.9, test above


def candidates(data_dir: Path | None) -> list[Path]:
    """Folders (or NLTK zips) that may hold the WordNet database, in search order."""
    out = [Path(p) for p in (data_dir, os.environ.get("KDBENCH_WORDNET"), os.environ.get("KDBENCH_DATA")) if p]
    out.append(Path(SYSTEM_DIR))
    nltk = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p] + list(NLTK_DIRS)
    for base in nltk:
        corpora = Path(base).expanduser() / "corpora"
        out += [corpora / "wordnet", corpora / "wordnet.zip"]
    return out


def read_database(source: Path) -> dict[str, bytes] | None:
    """The four data.* files of a folder or an NLTK zip, or None if any is missing."""
    names = [f"data.{p}" for p in POS_FILES]
    if source.is_dir():
        if all((source / n).is_file() for n in names):
            return {n: (source / n).read_bytes() for n in names}
    elif source.suffix == ".zip" and source.is_file():
        with zipfile.ZipFile(source) as zf:
            members = {Path(m).name: m for m in zf.namelist() if Path(m).name in names}
            if len(members) == len(names):
                return {n: zf.read(members[n]) for n in names}
    return None


def parse(files: dict[str, bytes]) -> list[tuple[str, str, int]]:
    """(synset id, gloss, lexicographer file number) for every synset."""
    rows = []
    for pos, letter in POS_FILES.items():
        for line in files[f"data.{pos}"].decode("utf-8").splitlines():
            if not line or line.startswith("  "):  # the licence header
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split(" ", 2)
            if not sep or len(fields) < 3:
                continue
            rows.append((f"{fields[0]}-{letter}", gloss.strip(), int(fields[1])))
    return rows


def bucket(synset_id: str) -> float:
    """A number in [0, 1) fixed by the synset id: decides the split and the order in it."""
    return int.from_bytes(hashlib.sha256(synset_id.encode()).digest()[:8], "big") / 2**64


def split_rows(rows: list[tuple[str, str, int]]) -> dict[str, list[tuple[str, str, int]]]:
    out: dict[str, list[tuple[float, tuple[str, str, int]]]] = {"train": [], "val": [], "test": []}
    for row in rows:
        b = bucket(row[0])
        out["train" if b < FRACTIONS[0] else "val" if b < FRACTIONS[1] else "test"].append((b, row))
    return {k: [r for _, r in sorted(v)] for k, v in out.items()}


def find_database(data_dir: Path | None = None) -> dict[str, bytes]:
    """The four data.* files from the first place that has them (see `candidates`)."""
    tried = candidates(data_dir)
    for source in tried:
        files = read_database(source)
        if files is not None:
            return files
    raise DataMissing(
        "WordNet 3.0 database (data.noun, data.verb, data.adj, data.adv) not found in "
        + ", ".join(map(str, tried[:4])) + " or an NLTK corpus folder; install it with "
        "`apt-get install wordnet-base` or point $KDBENCH_WORDNET at the folder"
    )


def lemmas(files: dict[str, bytes]) -> dict[str, str]:
    """Synset id → its words as text ("dog, domestic dog, Canis familiaris")."""
    out = {}
    for pos, letter in POS_FILES.items():
        for line in files[f"data.{pos}"].decode("utf-8").splitlines():
            if not line or line.startswith("  "):
                continue
            fields = line.partition(" | ")[0].split(" ")
            if len(fields) < 4:
                continue
            count = int(fields[3], 16)
            words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * count:2]]
            out[f"{fields[0]}-{letter}"] = ", ".join(words)
    return out


def gloss_pieces(gloss: str) -> list[str]:
    """A gloss, its definition alone and each quoted example alone (no duplicates, no empties)."""
    definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
    examples = [e.strip() for e in re.findall(r'"([^"]+)"', gloss)]
    return list(dict.fromkeys(p for p in (gloss, definition, *examples) if p))


def unlabelled_texts(data_dir: Path | None = None) -> tuple[list[str], str]:
    """Unlabelled text for general distillation, and a fingerprint of it.

    Only text of *training* synsets: each training gloss, its definition and its usage
    examples apart, and its words ("dog, domestic dog, Canis familiaris"). No text of a
    validation or test synset is used, and any piece that equals a piece of a validation
    or test gloss (or their word lists) is dropped, so nothing the student is evaluated
    on is seen. No labels. In hash order (the first N are a uniform sample).
    """
    files = find_database(data_dir)
    parts = split_rows(parse(files))
    words = lemmas(files)

    def pieces(rows: list[tuple[str, str, int]]) -> list[str]:
        return [p for sid, gloss, _ in rows for p in (*gloss_pieces(gloss), words.get(sid, "")) if p]

    held_out = set(pieces(parts["val"]) + pieces(parts["test"]))
    texts = [t for t in dict.fromkeys(pieces(parts["train"])) if t not in held_out]
    texts.sort(key=lambda t: hashlib.sha256(t.encode()).digest())
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return texts, digest


class WordNetSupersense(Dataset):
    """WordNet 3.0 glosses → supersense (45 lexicographer files); 94k/11.8k/11.9k, offline."""

    name = "wordnet-supersense"
    num_classes = len(LEXNAMES)

    def load(self, data_dir: Path | None = None, *, tokenizer: str | None = None, max_len: int = 64,
             train_limit: int | None = None, eval_limit: int | None = None,
             eval_by_length: bool = False, **options: Any) -> Splits:
        """Tokenised splits; `eval_by_length` sorts val/test by length (use with `eval_limit`)."""
        tokenizer = require_tokenizer(self.name, tokenizer)
        files = find_database(data_dir)
        key = {
            "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())},
            "tokenizer": tokenizer_id(tokenizer), "max_len": max_len, "train_limit": train_limit,
            "eval_limit": eval_limit, "eval_by_length": eval_by_length, "fractions": FRACTIONS,
        }

        def build() -> dict[str, Any]:
            parts = split_rows(parse(files))
            limits = {"train": train_limit, "val": eval_limit, "test": eval_limit}
            parts = {k: v[: limits[k]] if limits[k] is not None else v for k, v in parts.items()}
            texts = {k: [r[1] for r in v] for k, v in parts.items()}
            labels = {k: [r[2] for r in v] for k, v in parts.items()}
            return tokenized_splits(texts, labels, tokenizer, max_len, eval_by_length)

        return as_splits(cached_tensors(self.name, key, build), self.num_classes)


@hookimpl
def kdbench_datasets() -> list[type]:
    return [WordNetSupersense]
