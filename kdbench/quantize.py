"""Distill, then quantize: the student after PyTorch dynamic int8 quantization.

Distillation improves a small model and quantization shrinks it further; records keep
both so a reader sees what they give together. Only `nn.Linear` layers are quantized
(`torch.ao.quantization.quantize_dynamic`, int8 weights, activations quantized on the
fly), which runs on CPU only. Latency and size depend on the architecture, not on the
trained weights, so the runner measures them once per pair (like the float latency);
accuracy is measured per cell on the trained student.
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn


def quantize_linear(model: nn.Module) -> nn.Module:
    """A CPU copy of `model` with every nn.Linear dynamically quantized to int8 (eval mode)."""
    model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch marks quantized tensor creation deprecated; the API works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: the size of the shipped weights."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
