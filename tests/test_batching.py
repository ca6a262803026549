"""Seeded batching: the plain shuffled order, and length-grouped batches for padded text."""
from __future__ import annotations

import itertools

import torch
from torch import nn

from kdbench.api import Budget, Outputs, Schedule, TensorData
from kdbench.data import batch_indices
from kdbench.scenarios import noise_scenario
from kdbench.train import SupervisedLoss, train

N, BATCH = 200, 16
LENGTHS = torch.randint(3, 33, (N,), generator=torch.Generator().manual_seed(1))


def epoch(batches, n=N, size=BATCH):
    return [b.tolist() for b in itertools.islice(batches, n // size)]


def test_plain_batches_are_one_seeded_permutation_cut_in_order():
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(7))
    expected = [perm[s:s + BATCH].tolist() for s in range(0, N - BATCH + 1, BATCH)]
    assert epoch(batch_indices(N, BATCH, 7)) == expected
    assert epoch(batch_indices(N, BATCH, 7, lengths=LENGTHS)) == expected  # lengths alone change nothing


def test_grouped_batches_cover_an_epoch_once_and_follow_the_seed():
    first = epoch(batch_indices(N, BATCH, 7, lengths=LENGTHS, group=4))
    flat = [i for b in first for i in b]
    assert len(flat) == len(set(flat)) == N - N % BATCH and all(len(b) == BATCH for b in first)
    assert first == epoch(batch_indices(N, BATCH, 7, lengths=LENGTHS, group=4))
    assert first != epoch(batch_indices(N, BATCH, 8, lengths=LENGTHS, group=4))
    two = list(itertools.islice(batch_indices(N, BATCH, 7, lengths=LENGTHS, group=4), 2 * (N // BATCH)))
    assert [b.tolist() for b in two[N // BATCH:]] != first  # each epoch is drawn anew


def test_grouped_batches_carry_far_less_padding():
    def padded(batches):  # tokens a batch trimmed to its longest example computes on
        return sum(int(LENGTHS[b].max()) * len(b) for b in batches)

    plain = padded(itertools.islice(batch_indices(N, BATCH, 7), N // BATCH))
    grouped = padded(itertools.islice(batch_indices(N, BATCH, 7, lengths=LENGTHS, group=4), N // BATCH))
    real = int(LENGTHS.sum())
    assert grouped < plain and (grouped - real) < 0.25 * (plain - real)


def test_lengths_follow_the_examples_through_index_take_and_scenarios():
    data = TensorData({"input_ids": torch.arange(N)[:, None]}, torch.arange(N) % 3, LENGTHS)
    idx = torch.tensor([5, 2, 9])
    assert data.index(idx).lengths.tolist() == LENGTHS[idx].tolist()
    assert data.take(4).lengths.tolist() == LENGTHS[:4].tolist()
    assert data.to("cpu").lengths is LENGTHS
    assert data.to("meta").lengths.device.type == "meta"  # lengths travel with the data: no sync per step
    assert noise_scenario(40)(data, 3, 0).data.lengths is LENGTHS


def _batches_seen(schedule: Schedule) -> list[list[int]]:
    x = torch.arange(N, dtype=torch.float32)[:, None]
    data = TensorData(x, torch.zeros(N, dtype=torch.long), LENGTHS)
    seen: list[list[int]] = []

    def forward(model, inputs, needs):
        seen.append(inputs[:, 0].long().tolist())
        return Outputs(logits=model(inputs))

    train(nn.Linear(1, 2), SupervisedLoss(), data, Budget("steps", 12), schedule, forward, seed=3)
    return seen


def test_train_groups_by_length_only_when_the_schedule_says_so():
    plain = Schedule(steps=12, teacher_steps=1, batch_size=BATCH)
    grouped = Schedule(steps=12, teacher_steps=1, batch_size=BATCH, extra={"group_by_length": 4})
    assert _batches_seen(plain) == epoch(batch_indices(N, BATCH, 3))
    assert _batches_seen(grouped) == epoch(batch_indices(N, BATCH, 3, lengths=LENGTHS, group=4))
