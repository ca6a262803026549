"""Taps for timm vision models: ViT blocks and ResNet stages come back as NCHW maps."""
from __future__ import annotations

import pytest
import torch

from kdbench.taps import outputs, token_map
from kdbench_plugins.resnet_cnn import ResNetCNN
from kdbench_plugins.vit_cnn import VIT_TEACHER, ViTCNN, vit_model

NEEDS = frozenset({"logits", "features"})


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 1, 28, 28)


def _eval(model: torch.nn.Module) -> torch.nn.Module:
    return model.eval()


def test_vit_teacher_blocks_come_back_as_7x7_maps(x):
    torch.manual_seed(0)
    vit = _eval(ViTCNN().build_teacher(10))
    out = outputs(vit, x, NEEDS)
    assert out.logits.shape == (2, 10)
    assert [tuple(f.shape) for f in out.features] == [(2, 128, 7, 7)] * 6  # one map per block


def test_vit_teacher_embeds_patches_with_timms_conv_stem(x):
    vit = ViTCNN().build_teacher(10)
    convs = [m for m in vit.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (2, 2)), ((3, 3), (2, 2)), ((1, 1), (1, 1))]
    assert vit.patch_embed.grid_size == (7, 7)


def test_vit_with_a_class_token_gives_maps_of_its_patch_tokens_only(x):
    torch.manual_seed(0)
    vit = _eval(vit_model({**VIT_TEACHER, "class_token": True, "global_pool": "token"}, 10))
    assert vit.num_prefix_tokens == 1
    out = outputs(vit, x, NEEDS)
    assert [tuple(f.shape) for f in out.features] == [(2, 128, 7, 7)] * 6
    with torch.no_grad():
        assert torch.allclose(outputs(vit, x, NEEDS).logits, vit(x), atol=1e-5)


def test_resnet_student_stem_and_stages_come_back_as_maps(x):
    torch.manual_seed(0)
    student = _eval(ResNetCNN().build_student(None, 10))
    shapes = [tuple(f.shape) for f in outputs(student, x, NEEDS).features]
    assert shapes == [(2, 8, 14, 14), (2, 8, 7, 7), (2, 16, 4, 4), (2, 32, 2, 2), (2, 64, 1, 1)]


def test_resnet_teacher_stages_are_wider_than_the_students(x):
    torch.manual_seed(0)
    teacher = _eval(ResNetCNN().build_teacher(10))
    shapes = [tuple(f.shape[1:]) for f in outputs(teacher, x, NEEDS).features]
    assert shapes == [(64, 14, 14), (32, 7, 7), (64, 4, 4), (128, 2, 2), (256, 1, 1)]


def test_vit_cnn_student_is_the_resnet_cnn_student(x):
    torch.manual_seed(3)
    a = ViTCNN().build_student(None, 10)
    torch.manual_seed(3)
    b = ResNetCNN().build_student(None, 10)
    assert ViTCNN.student_spec == ResNetCNN.student_spec
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("build", [lambda: ViTCNN().build_teacher(10), lambda: ResNetCNN().build_student(None, 10)],
                         ids=["vit", "resnet"])
def test_logits_through_the_feature_path_equal_a_plain_forward(build, x):
    torch.manual_seed(0)
    model = _eval(build())
    with torch.no_grad():
        assert torch.allclose(outputs(model, x, NEEDS).logits, model(x), atol=1e-5)


def test_features_are_none_unless_asked(x):
    torch.manual_seed(0)
    vit = _eval(ViTCNN().build_teacher(10))
    assert outputs(vit, x, frozenset({"logits"})).features is None


def test_vit_block_map_is_its_patch_tokens_in_row_major_order(x):
    torch.manual_seed(0)
    vit = _eval(ViTCNN().build_teacher(10))
    with torch.no_grad():
        tokens = vit.forward_intermediates(x, indices=[0], output_fmt="NLC", intermediates_only=True)[0]
        maps = outputs(vit, x, NEEDS).features[0]
    assert tokens.shape == (2, 49, 128)  # patch tokens only, NLC
    assert torch.allclose(maps[:, :, 1, 2], tokens[:, 1 * 7 + 2], atol=1e-6)


def test_token_map_drops_prefix_tokens():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 class token + a 2×2 grid
    m = token_map(tokens, prefix_tokens=1)
    assert m.shape == (2, 3, 2, 2)
    assert torch.equal(m[:, :, 1, 0], tokens[:, 1 + 2])


def test_token_map_refuses_a_non_square_grid():
    with pytest.raises(ValueError, match="square"):
        token_map(torch.zeros(1, 6, 4), prefix_tokens=1)
