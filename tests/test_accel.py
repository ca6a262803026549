"""The device path: bf16 autocast and channels_last are opt-in on CPU, on by default on
CUDA, and never change what methods see (fp32 outputs)."""
from __future__ import annotations

import pytest
import torch

from kdbench.accel import Accel
from kdbench.results import load_records

# The CPU path is pinned: on a CUDA machine the default device would be the GPU.
SMOKE_CELL = ["--methods", "hinton", "--pairs", "mlp-hinton", "--profile", "smoke", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def resnet(registry):
    from kdbench.plan import RunConfig
    from kdbench.worker import CellWorker

    st = CellWorker(RunConfig(profile="smoke", progress=False, device="cpu"), registry).pair("resnet-cnn")
    return st.pair, st.teacher.model, st.splits.test.take(8).x


def test_cpu_defaults_to_plain_fp32():
    accel = Accel.choose(torch.device("cpu"))
    assert accel.describe() == {"precision": "fp32", "channels_last": False}
    forward = object()
    assert accel.forward(forward) is forward  # nothing wrapped, nothing to pay


def test_bf16_autocast_returns_fp32_outputs_close_to_fp32(resnet):
    pair, model, x = resnet
    needs = frozenset({"logits", "features"})
    plain = pair.forward(model, x, needs)
    fast = Accel(torch.device("cpu"), bf16=True).forward(pair.forward)(model, x, needs)
    assert fast.logits.dtype == torch.float32 and all(f.dtype == torch.float32 for f in fast.features)
    assert not torch.equal(fast.logits, plain.logits)  # it really ran in bf16
    assert torch.allclose(fast.logits, plain.logits, atol=0.1, rtol=0.05)


def test_channels_last_converts_convolutions_and_keeps_the_outputs(resnet):
    pair, model, x = resnet
    accel = Accel(torch.device("cpu"), channels_last=True)
    student = pair.build_student(model, 10).eval()
    with torch.no_grad():
        plain = pair.forward(student, x, frozenset({"logits"})).logits
        nhwc = accel.model(student)
        conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        fast = accel.forward(pair.forward)(nhwc, x, frozenset({"logits"})).logits
    assert torch.allclose(fast, plain, atol=1e-5)


def test_bf16_run_is_recorded_and_caches_its_own_teacher_logits(cli_run, tmp_path):
    code, _, err = cli_run("run", *SMOKE_CELL, "--precision", "bf16", "--out", str(tmp_path / "bf16"))
    assert code == 0, err
    (record,) = load_records([tmp_path / "bf16"])
    assert record["status"] == "ok" and record["precision"] == "bf16" and record["channels_last"] is False
    assert record["train"]["teacher"] == "cached"
    assert 0.0 < record["metrics"]["test_acc"] <= 1.0
    from kdbench.zoo import Zoo

    assert list(Zoo().root.glob(f"{record['teacher_key']}/train-logits-smoke-*-bf16.safetensors"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_smoke_cell_uses_bf16_and_channels_last(cli_run, tmp_path):
    code, _, err = cli_run("run", "--methods", "student-only,hinton", "--pairs", "resnet-cnn", "--profile", "smoke",
                           "--quiet", "--device", "cuda", "--out", str(tmp_path))
    assert code == 0, err
    for record in load_records([tmp_path]):
        assert record["status"] == "ok" and record["device"].startswith("cuda")
        assert record["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
        assert record["channels_last"] is True
        assert record["quantized"]["skipped"]
