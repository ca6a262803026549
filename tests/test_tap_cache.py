"""Every teacher tap a method reads is cached once, in half precision, within a memory cap;
the losses stay within 1e-3 of the live teacher's, and the live teacher runs where a
cache would be wrong (augmented pairs) or too big."""
from __future__ import annotations

import pytest

from kdbench.results import load_records

SMOKE = ["--pairs", "resnet-cnn", "--profile", "smoke", "--seeds", "1", "--quiet", "--threads", "1"]

AUGMENTED_PAIR = '''
from kdbench import hookimpl
from kdbench_plugins.resnet_cnn import ResNetCNN


class Augmented(ResNetCNN):
    """resnet-cnn whose training batches are said to be randomly augmented (a test pair)."""
    name = "resnet-cnn-augmented"
    augmented = True


@hookimpl
def kdbench_pairs():
    return [Augmented]
'''


def _record(out, method: str) -> dict:
    return next(r for r in load_records([out]) if r["method"] == method)


@pytest.fixture(scope="module")
def cached_and_live(grid_out):
    return (grid_out("--methods", "fitnet,ofa", *SMOKE, name="cached"),
            grid_out("--methods", "fitnet,ofa", *SMOKE, "--no-teacher-cache", name="live"))


@pytest.mark.parametrize("method", ["fitnet", "ofa"])
def test_cached_taps_give_the_live_teachers_losses_within_1e_3(cached_and_live, method):
    cached, live = (_record(out, method) for out in cached_and_live)
    assert (cached["train"]["teacher"], live["train"]["teacher"]) == ("cached", "live")
    assert cached["losses"] == pytest.approx(live["losses"], rel=1e-3)


def test_an_augmented_pair_runs_its_teacher_live(cli_run, tmp_path):
    plugin = tmp_path / "augmented.py"
    plugin.write_text(AUGMENTED_PAIR)
    code, _, err = cli_run("run", "--plugin", str(plugin), "--methods", "fitnet", *SMOKE, "--pairs",
                           "resnet-cnn-augmented", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert _record(tmp_path / "out", "fitnet")["train"]["teacher"] == "live"


def test_taps_beyond_the_cap_leave_the_teacher_live(cli_run, tmp_path, monkeypatch):
    from kdbench import teacher_cache

    monkeypatch.setattr(teacher_cache, "TAP_CACHE_BYTES", 1024)
    code, _, err = cli_run("run", "--methods", "fitnet,hinton", *SMOKE, "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert _record(tmp_path / "out", "fitnet")["train"]["teacher"] == "live"
    assert _record(tmp_path / "out", "hinton")["train"]["teacher"] == "cached"  # logits are not capped


def test_text_batches_of_different_lengths_come_back_at_their_own_length(registry):
    """A right-padded text pair trims each batch to its longest example; cached outputs
    are stored padded to the longest and cut back per batch, matching the live forward."""
    import torch

    from kdbench.api import Splits, TensorData
    from kdbench.plan import RunConfig
    from kdbench.teacher_cache import CachedOutputs, teacher_outputs
    from kdbench.worker import CellWorker

    prepared = CellWorker(RunConfig(profile="smoke", progress=False), registry).pair("minilm-tiny4")
    x = {k: v.clone() for k, v in prepared.splits.train.x.items()}
    x["attention_mask"][:16, 6:] = 0  # the first batch: six tokens each, the rest padding
    x["input_ids"][:16, 6:] = 0
    train = TensorData(x, prepared.splits.train.y)
    splits = Splits(train, prepared.splits.val, prepared.splits.test, prepared.splits.num_classes)
    taps = frozenset({"logits", "hidden_states", "attentions", "embeddings"})
    cached = teacher_outputs(prepared.teacher, prepared.pair, splits, taps, 16)
    assert isinstance(cached, CachedOutputs)
    model = prepared.teacher.model
    for idx in (torch.arange(16), torch.arange(8, 24), torch.tensor([3, 40, 90, 100])):
        with torch.no_grad():
            live = prepared.pair.forward(model, train.index(idx).x, taps)
        got = cached.rows(idx, torch.float32)
        real = live.mask.bool()  # padded positions are meaningless (kdbench.Outputs): compare real tokens
        assert torch.equal(got.mask.bool(), real)
        torch.testing.assert_close(got.logits, live.logits, rtol=1e-2, atol=1e-2)
        for a, b in zip([got.embeddings, *got.hidden_states], [live.embeddings, *live.hidden_states]):
            assert a.shape == b.shape
            torch.testing.assert_close(a[real], b[real], rtol=1e-2, atol=2e-2)
        pairs = real[:, None, :, None] & real[:, None, None, :]
        for a, b in zip(got.attentions, live.attentions):
            assert a.shape == b.shape
            torch.testing.assert_close(a[pairs.expand_as(a)], b[pairs.expand_as(b)], rtol=1e-2, atol=2e-2)


def test_a_batch_of_short_texts_comes_back_short_even_when_every_chunk_was_full(registry):
    """Cache chunks in split order all reach max_len, but a length-grouped training batch
    of short glosses trims to far less: the cached taps must be cut to it as well."""
    import torch

    from kdbench.plan import RunConfig
    from kdbench.teacher_cache import teacher_outputs
    from kdbench.worker import CellWorker

    prepared = CellWorker(RunConfig(profile="smoke", progress=False), registry).pair("minilm-tiny4")
    train = prepared.splits.train
    taps = frozenset({"logits", "hidden_states"})
    cached = teacher_outputs(prepared.teacher, prepared.pair, prepared.splits, taps, 16)
    idx = torch.argsort(train.lengths)[:16]  # the 16 shortest glosses: one grouped batch
    with torch.no_grad():
        live = prepared.pair.forward(prepared.teacher.model, train.index(idx).x, taps)
    got = cached.rows(idx, torch.float32)
    assert cached.mask.shape[1] > live.mask.shape[1]  # the premise: this batch is shorter than the cache
    assert [t.shape for t in got.hidden_states] == [t.shape for t in live.hidden_states]
    real = live.mask.bool()
    for a, b in zip(got.hidden_states, live.hidden_states):
        torch.testing.assert_close(a[real], b[real], rtol=1e-2, atol=2e-2)
