"""The hybrid family (models/hybrid.py): CCT's convolutional tokenizer and sequence pooling in front of
and behind vit_best's transformer. Shapes, the tokenizer's layers, the pooling formula and the
validation of its configuration; the behaviour every model shares is tested over the registry in
test_models.py and test_engine.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.errors import ConfigError
from fmbench.explain import saliency
from fmbench.models import build_model, get_spec
from fmbench.models.hybrid import Hybrid, HybridConfig
from fmbench.models.vit import ViTBestConfig


def test_the_tokenizer_is_ccts_two_conv_pool_stages_giving_49_tokens():
    model = build_model("hybrid_best")
    stages = list(model.tokenizer)
    assert len(stages) == 2
    for stage, (cin, cout) in zip(stages, [(1, 64), (64, 128)]):
        conv, relu, pool = stage
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == \
            (cin, cout, (3, 3), (1, 1), (1, 1))
        assert conv.bias is None and type(relu) is nn.ReLU
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    tokens = model.tokenizer(torch.rand(2, 1, 28, 28))
    assert tokens.shape == (2, 49, 128) and model.cfg.side == 7
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_the_transformer_is_vit_bests():
    hybrid, vit = HybridConfig(), ViTBestConfig()
    for key in ("dim", "depth", "heads", "mlp_dim", "drop_path", "tta_flip"):
        assert getattr(hybrid, key) == getattr(vit, key)
    model, reference = build_model("hybrid_best"), build_model("vit_best")
    assert [tuple(p.shape) for p in model.blocks.parameters()] == [tuple(p.shape) for p in reference.blocks.parameters()]
    assert get_spec("hybrid_best").family == "hybrid" and get_spec("hybrid_best").tier == "strong"


def test_sequence_pooling_is_ccts_softmax_weighted_sum():
    model = build_model("hybrid_best")
    x = torch.randn(4, 49, 128)
    expected = torch.matmul(F.softmax(model.pool.attention_pool(x), dim=1).transpose(-1, -2), x).squeeze(-2)
    assert torch.allclose(model.pool(x), expected, atol=1e-6)
    with torch.no_grad():                         # equal weights: the plain mean of the tokens
        model.pool.attention_pool.weight.zero_()
    assert torch.allclose(model.pool(x), x.mean(1), atol=1e-6)


@pytest.mark.parametrize("method", ["rollout", "attention", "gradcam"])
def test_every_method_explains_the_hybrid(method):
    torch.manual_seed(0)
    model = Hybrid(HybridConfig(depth=2))
    maps = saliency(model, "hybrid", torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8), method=method)
    assert maps.shape == (3, 28, 28) and maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize("overrides, message", [
    ({"pool": "mean"}, "pool must be 'seq', got 'mean'"),
    ({"conv_layers": 0}, "conv_layers must be 1-4"),
    ({"conv_width": 0}, "conv_width >= 1"),
    ({"dim": 130}, "dim 130 is not divisible by heads 4"),
])
def test_a_bad_hybrid_config_is_one_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        HybridConfig(**overrides)
