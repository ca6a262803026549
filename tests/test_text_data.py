"""Text datasets: WordNet parsing and split, the tokenisation cache, offline errors."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

import kdbench_plugins.sst2 as sst2
import kdbench_plugins.wordnet_supersense as wn
from kdbench import DataMissing
from kdbench_plugins.minilm import minilm_source

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
LINES = {
    "noun": "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known  \n"
            "02084071 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis; \"the dog barked\"  \n",
    "verb": "01835496 38 v 01 travel 0 000 | change location; move  \n",
    "adj": "00001740 00 a 01 able 0 000 | having the necessary means  \n",
    "adv": "00001740 02 r 01 barely 0 000 | only just  \n",
}


def fake_wordnet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pos, text in LINES.items():
        (folder / f"data.{pos}").write_text(HEADER + text)
    return folder


def test_parse_reads_every_synset_with_its_lexicographer_file(tmp_path):
    rows = wn.parse(wn.read_database(fake_wordnet(tmp_path)))
    assert [(r[0], r[2]) for r in rows] == [
        ("00001740-n", 3), ("02084071-n", 5), ("01835496-v", 38), ("00001740-a", 0), ("00001740-r", 2)]
    assert rows[1][1] == 'a member of the genus Canis; "the dog barked"'
    assert wn.LEXNAMES[5] == "noun.animal" and wn.LEXNAMES[38] == "verb.motion" and len(wn.LEXNAMES) == 45


def test_an_nltk_zip_is_read_too(tmp_path):
    folder = fake_wordnet(tmp_path / "src")
    with zipfile.ZipFile(tmp_path / "wordnet.zip", "w") as zf:
        for pos in LINES:
            zf.write(folder / f"data.{pos}", f"wordnet/data.{pos}")
    assert wn.read_database(tmp_path / "wordnet.zip") == wn.read_database(folder)


def test_split_is_fixed_by_the_synset_id():
    assert wn.bucket("02084071-n") == wn.bucket("02084071-n")
    rows = [(f"{i:08d}-n", "gloss", 0) for i in range(2000)]
    parts = wn.split_rows(rows)
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == 2000 and 1500 < sizes["train"] < 1700 and 150 < sizes["val"] < 250
    ids = [{r[0] for r in v} for v in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert parts == wn.split_rows(list(reversed(rows)))  # order-free: the hash decides


def test_missing_wordnet_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_WORDNET", str(tmp_path / "nothing"))
    monkeypatch.setenv("NLTK_DATA", "")
    monkeypatch.delenv("KDBENCH_DATA", raising=False)
    monkeypatch.setattr(wn, "SYSTEM_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(wn, "NLTK_DIRS", ())
    with pytest.raises(DataMissing, match="wordnet-base") as err:
        wn.WordNetSupersense().load(tokenizer=minilm_source())
    assert "\n" not in str(err.value)


@pytest.mark.integration
def test_real_wordnet_loads_tokenised_and_cached(kdbench_home):
    options = {"tokenizer": minilm_source(), "max_len": 16, "train_limit": 64, "eval_limit": 32,
               "eval_by_length": True}
    splits = wn.WordNetSupersense().load(**options)
    assert (len(splits.train), len(splits.val), len(splits.test), splits.num_classes) == (64, 32, 32, 45)
    assert splits.train.x["input_ids"].shape == (64, 16) and splits.train.y.max() < 45
    assert splits.train.x["input_ids"][:, 0].eq(101).all()  # [CLS]
    lengths = splits.test.x["attention_mask"].sum(1)
    assert torch.equal(lengths, lengths.sort().values)  # evaluation sorted by length
    folder = kdbench_home / "data" / "wordnet-supersense"
    cached = set(folder.glob("tokenized-*.safetensors"))
    assert cached
    again = wn.WordNetSupersense().load(**options)
    assert set(folder.glob("tokenized-*.safetensors")) == cached  # read back, not tokenised again
    assert again.fingerprint == splits.fingerprint
    assert torch.equal(again.val.x["input_ids"], splits.val.x["input_ids"])


def test_sst2_offline_fails_with_one_line_saying_so():
    with pytest.raises(DataMissing, match="internet") as err:
        sst2.SST2().load(tokenizer=minilm_source())
    assert "\n" not in str(err.value)


def test_sst2_without_datasets_names_the_extra(monkeypatch):
    monkeypatch.delenv("KDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sst2, "has_datasets", lambda: False)
    with pytest.raises(DataMissing, match=r"kdbench\[sst2\]"):
        sst2.SST2().load(tokenizer=minilm_source())


def test_sst2_validation_is_cut_from_train_deterministically():
    texts = [f"sentence {i}" for i in range(2000)]
    train, val = sst2.split_train(texts, [i % 2 for i in range(2000)])
    assert len(val) == sst2.VAL_SIZE and not set(train) & set(val) and len(train) + len(val) == 2000
    assert (train, val) == sst2.split_train(texts, [0] * 2000)


def test_text_datasets_need_a_tokenizer():
    from kdbench import UsageError

    with pytest.raises(UsageError, match="tokenizer"):
        wn.WordNetSupersense().load()
