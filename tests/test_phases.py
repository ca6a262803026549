"""Phases are separate trainings inside one budget: fresh optimizer, own schedule, own share."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdbench.train
from kdbench import Budget, Method, Outputs, Schedule, TensorData, UsageError
from kdbench.api import Phase
from kdbench.train import probe_r2, representation_check, train

SCHEDULE = Schedule(steps=10, teacher_steps=1, batch_size=8, lr=1e-2)


class TwoStage(Method):
    """Feature MSE to the teacher, then cross-entropy: a TinyBERT-shaped toy."""

    name = "two-stage"
    defaults = {"first": 0.3}

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.seen: list[float] = []

    def phases(self) -> list[Phase]:
        return [Phase("inner", self.hp.first, schedule="constant"),
                Phase("pred", 1 - self.hp.first, schedule="linear", warmup=0.25, lr_scale=0.5)]

    def loss(self, student: Outputs, teacher: Outputs, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(self.progress)
        if self.progress < self.hp.first:
            return {"mse": F.mse_loss(student.logits, teacher.logits)}
        return {"ce": F.cross_entropy(student.logits, labels)}


class Plain(Method):
    name = "plain"
    uses_teacher = False

    def loss(self, student: Outputs, teacher: Outputs, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(student.logits, labels)}


def forward(model: nn.Module, x: torch.Tensor, needs: frozenset[str]) -> Outputs:
    return Outputs(logits=model(x))


def setup(seed: int = 0) -> tuple[nn.Module, nn.Module, TensorData]:
    torch.manual_seed(seed)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)), nn.Linear(6, 3), TensorData(x, y)


def run(method: Method, budget: Budget = Budget(steps=10), **kw: object) -> kdbench.train.TrainResult:
    student, teacher, data = setup()
    return train(student, method, data, budget, SCHEDULE, forward, seed=0, teacher=teacher, **kw)


def test_phase_boundary_builds_a_fresh_optimizer_with_empty_state(monkeypatch):
    made: list[tuple[torch.optim.Optimizer, int, list[int]]] = []
    original = kdbench.train.optimizer_for

    def spy(params, lr, weight_decay):
        opt = original(params, lr, weight_decay)
        made.append((opt, len(opt.state), [len(o.state) for o, _, _ in made]))
        return opt

    monkeypatch.setattr(kdbench.train, "optimizer_for", spy)
    result = run(TwoStage())
    assert len(made) == 2  # one per phase
    (first, _, _), (second, state_at_birth, earlier) = made
    assert first is not second and state_at_birth == 0  # the second phase starts from nothing
    assert earlier == [len(list(p for g in first.param_groups for p in g["params"]))]  # the first had moments
    assert [p["steps"] for p in result.phases] == [3, 7]


def test_each_phase_restarts_its_schedule():
    result = run(TwoStage())
    first, second = result.lrs[:3], result.lrs[3:]
    assert first == [pytest.approx(1e-2)] * 3  # constant
    assert second[0] == 0.0  # warm-up from 0 again
    peak = max(second)
    assert peak == pytest.approx(0.5e-2, rel=0.2) and second.index(peak) in (1, 2)
    assert second[-1] < peak and all(a >= b for a, b in zip(second[2:], second[3:]))  # linear decay
    assert [p["lr"] for p in result.phases] == [pytest.approx(1e-2), pytest.approx(0.5e-2)]
    assert result.phases[0]["terms"].keys() == {"mse"} and result.phases[1]["terms"].keys() == {"ce"}


def test_progress_stays_inside_each_phase_share():
    method = TwoStage()
    run(method)
    assert all(p < 0.3 for p in method.seen[:3]) and all(0.3 <= p < 1 for p in method.seen[3:])


@pytest.mark.parametrize("steps,fractions", [(10, (0.3, 0.7)), (7, (1 / 3, 1 / 3, 1 / 3)), (5, (0.5, 0.5)),
                                             (4, (0.0, 1.0)), (9, (0.77, 0.23))])
def test_phase_steps_sum_to_the_cell_budget(steps, fractions):
    class Many(Plain):
        def phases(self) -> list[Phase]:
            return [Phase(f"p{i}", f) for i, f in enumerate(fractions)]

    result = run(Many(), Budget(steps=steps))
    assert sum(p["steps"] for p in result.phases) == result.steps == steps
    for p, f in zip(result.phases, fractions):
        assert abs(p["steps"] - f * steps) <= 1


def test_time_budget_splits_seconds_by_the_same_fractions(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(kdbench.train, "clock", lambda: now[0])

    class Timed(TwoStage):
        def loss(self, student, teacher, labels):
            now[0] += 1.0  # every step costs one second
            return super().loss(student, teacher, labels)

    result = run(Timed(), Budget("time", seconds=10.0))
    assert [p["steps"] for p in result.phases] == [3, 7]
    assert [p["seconds"] for p in result.phases] == [3.0, 7.0]
    assert result.seconds == 10.0 and result.steps == 10


def test_a_method_without_phases_trains_as_before_one_cosine_no_phase_log():
    result = run(Plain())
    assert result.phases == [] and result.lrs[0] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(result.lrs, result.lrs[1:]))  # one cosine over the budget


def test_a_pairs_warmup_shapes_the_one_phase_of_a_method_without_phases():
    student, teacher, data = setup()
    warm = dataclasses.replace(SCHEDULE, warmup=0.3)
    lrs = train(student, Plain(), data, Budget(steps=10), warm, forward, seed=0).lrs
    assert lrs[0] == 0.0 and lrs[:4] == sorted(lrs[:4])  # linear warm-up over the first 3 steps
    assert max(lrs) == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # then cosine


def test_phase_checks_run_at_start_and_after_each_phase_and_change_no_loss():
    calls = []

    def check() -> dict[str, float]:
        torch.rand(5)  # a check that draws random numbers must not shift the data order or dropout
        calls.append(1)
        return {"x": float(len(calls))}

    plain, checked = run(TwoStage()), run(TwoStage(), phase_check=check)
    assert plain.losses == checked.losses
    assert [(c["at"], c["step"]) for c in checked.phase_checks] == [("start", 0), ("end of inner", 3),
                                                                    ("end of pred", 10)]


def test_phase_fractions_must_sum_to_one():
    class Bad(Plain):
        def phases(self) -> list[Phase]:
            return [Phase("a", 0.5), Phase("b", 0.4)]

    with pytest.raises(UsageError, match="sum to 1"):
        run(Bad())
    with pytest.raises(UsageError, match="schedule"):
        Phase("a", 1.0, schedule="step")


def test_representation_check_sees_a_collapsed_student():
    torch.manual_seed(0)
    x = torch.randn(40, 5, 8)
    mask = torch.ones(40, 5, dtype=torch.long)
    teacher_map = torch.randn(8, 12)

    def fwd(model, inputs, needs):
        h = model(inputs)
        return Outputs(logits=h[:, 0, :2], hidden_states=[h], mask=mask)

    class Collapsed(nn.Module):
        def forward(self, inputs):
            return torch.zeros(*inputs.shape[:2], 4) + 0.5

    teacher = nn.Identity()
    linear = nn.Sequential()  # identity student: a linear map reaches the teacher's rows
    batch = TensorData(x, torch.zeros(40, dtype=torch.long))
    t_fwd = lambda m, i, n: fwd(m, i @ teacher_map if m is teacher else i, n)  # noqa: E731
    good = representation_check(linear, teacher, t_fwd, batch, {"hidden_states"})()
    bad = representation_check(Collapsed(), teacher, t_fwd, batch, {"hidden_states"})()
    assert good["hidden_r2"] > 0.95 and good["pooled_spread"] > 0.1
    assert bad["pooled_spread"] == 0.0 and bad["hidden_r2"] < 0.05
    assert probe_r2(torch.randn(200, 3), torch.randn(200, 3)) < 0.1
    few = torch.randn(60, 40)  # fewer rows than features: noise must not look predictable
    assert probe_r2(few, torch.randn(60, 5)) < 0.1
