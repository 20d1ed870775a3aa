"""Fast CPU layers: dropout masks, the fused C kernels (fmbench.kernels) and the engine's CPU view of a model.

Each fused path is checked against plain PyTorch modules (in float64 where rounding matters),
including gradients, BatchNorm running statistics and the statistics of the random masks.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench import kernels as K
from fmbench.engine.fuse import CpuAttention, FusedConvBlock, FusedMLP, cpu_view
from fmbench.kernels.ops import gelu_dropout, relu_bn_pool, relu_bn_pool_supported, softmax_dropout
from fmbench.models.cnn import CNNSeed, CNNSeedConfig
from fmbench.models.layers import FastDropout, keep_mask, keep_scale
from fmbench.models.vit import MLP, Attention, ViT, ViTConfig

CPU = torch.device("cpu")


@pytest.fixture
def kernels():
    if K.library() is None:
        pytest.skip("no C compiler here: the fused kernels are unavailable (PyTorch fallbacks are tested below)")


@pytest.fixture
def no_kernels(monkeypatch):
    monkeypatch.setattr(K, "_lib", None)


@pytest.fixture(params=["kernels", "no_kernels"])
def kernels_or_fallback(request):
    """Run the test twice: with the C kernels (skipped without a compiler) and with PyTorch's fallback."""
    request.getfixturevalue(request.param)


def test_keep_mask_rate_and_every_lane_uniform():
    torch.manual_seed(0)
    m = keep_mask((4_000_000,), 0.2, torch.float32, CPU)
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert abs(m.mean().item() - 0.8) < 2e-3
    lanes = m.view(-1, 4).mean(0)     # each 64-bit draw feeds 4 consecutive elements
    assert torch.all((lanes - 0.8).abs() < 3e-3), lanes


def test_keep_scale_makes_dropout_unbiased():
    for p in (0.1, 0.2, 0.5):
        keep = round((1 - p) * 65536) / 65536
        assert abs(keep - (1 - p)) <= 0.5 / 65536
        assert keep_scale(p) * keep == pytest.approx(1.0, abs=1e-12)


def test_fast_dropout_is_a_dropout():
    drop = FastDropout(0.2)
    x = torch.rand(200_000) + 1
    assert drop.eval()(x) is x
    torch.manual_seed(1)
    y = drop.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * keep_scale(0.2))
    assert abs(kept.float().mean().item() - 0.8) < 5e-3
    assert abs((y.mean() / x.mean()).item() - 1) < 5e-3
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)      # the default generator makes it repeatable
    assert torch.equal(FastDropout(0.0).train()(x), x)


def _reference_block(c, bn, training):
    """relu -> bn -> max-pool in float64, the modules as written."""
    bn64 = copy.deepcopy(bn).double().train(training)
    c64 = c.detach().double().contiguous().requires_grad_()
    y = F.max_pool2d(bn64(torch.relu(c64)), 2)
    return c64, bn64, y


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(6, 64, 26, 26), (5, 128, 11, 11)])
@pytest.mark.parametrize("training", [True, False])
def test_relu_bn_pool_matches_the_modules(kernels, dtype, shape, training):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(shape[1], eps=1e-3, momentum=0.1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(0, 1)
        bn.running_var.uniform_(0.5, 2)
    c = (torch.randn(shape) * 2).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    gy = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2).to(dtype)
    c64, bn64, y64 = _reference_block(c, bn, training)
    y64.backward(gy.double())
    fused = copy.deepcopy(bn).train(training)
    assert relu_bn_pool_supported(c, fused)
    y = relu_bn_pool(c, fused)
    y.backward(gy)
    tol = 1e-5 if dtype == torch.float32 else 2e-2

    def close(a, b):
        return (a.double() - b).abs().max().item() <= tol * max(b.abs().max().item(), 1.0)

    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    assert close(y, y64) and close(c.grad, c64.grad)
    assert close(fused.weight.grad, bn64.weight.grad) and close(fused.bias.grad, bn64.bias.grad)
    assert close(fused.running_mean, bn64.running_mean) and close(fused.running_var, bn64.running_var)
    assert fused.num_batches_tracked.item() == bn64.num_batches_tracked.item()


def test_relu_bn_pool_declines_what_it_cannot_run(kernels):
    bn = nn.BatchNorm2d(8)
    assert not relu_bn_pool_supported(torch.randn(2, 8, 6, 6), bn)                      # not channels-last
    assert not relu_bn_pool_supported(torch.randn(2, 8, 6, 6, dtype=torch.float64)
                                      .contiguous(memory_format=torch.channels_last), bn)  # dtype
    assert not relu_bn_pool_supported(torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last),
                                      nn.BatchNorm2d(8, affine=False))


def test_cpu_view_shares_weights_and_leaves_the_model_alone():
    model = CNNSeed().to(memory_format=torch.channels_last)
    keys = list(model.state_dict())
    view = cpu_view(model)
    assert view is not model and cpu_view(model) is view                          # cached
    assert all(a is b for a, b in zip(view.parameters(), model.parameters()))
    assert all(a is b for a, b in zip(view.buffers(), model.buffers()))
    assert isinstance(view.features[0], FusedConvBlock) and type(view.dropout) is FastDropout
    assert type(model.dropout) is nn.Dropout and not isinstance(model.features[0], FusedConvBlock)
    assert list(model.state_dict()) == keys
    model.eval()
    assert not cpu_view(model).training                                           # follows the model's mode
    plain = nn.Linear(3, 2)
    assert cpu_view(plain) is plain                                                # nothing to rewrite


def test_cpu_view_trains_like_the_model(kernels):
    """One step on the fused float32 view matches the modules run in float64 (weights, BN statistics)."""
    torch.manual_seed(0)
    ref = CNNSeed(CNNSeedConfig(dropout=0.0))
    fused = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    ref = ref.double()
    x = torch.rand(32, 1, 28, 28)
    y = torch.randint(0, 10, (32,))
    for net, model, inp in ((ref, ref, x.double()), (cpu_view(fused), fused, x.contiguous(memory_format=torch.channels_last))):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        net.train()
        F.cross_entropy(net(inp), y).backward()
        opt.step()
    for (name, pa), pb in zip(ref.state_dict().items(), fused.state_dict().values()):
        assert torch.allclose(pa.double(), pb.double(), rtol=1e-4, atol=1e-5), name
    ref.eval()
    fused.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x.double()), cpu_view(fused)(x).double(), rtol=1e-4, atol=1e-4)


def test_gelu_dropout(kernels_or_fallback):
    torch.manual_seed(0)
    h = (torch.randn(600, 64) * 3).requires_grad_()
    g = torch.randn(600, 64)
    h64 = h.detach().double().requires_grad_()
    ref = F.gelu(h64)
    ref.backward(g.double())
    ref = ref.detach()
    out = gelu_dropout(h, 0.0)
    out.backward(g)
    assert torch.allclose(out.detach().double(), ref, atol=1e-5)
    assert torch.allclose(h.grad.double(), h64.grad, atol=1e-5)
    h.grad = None
    out = gelu_dropout(h, 0.2)
    out.backward(g)
    out = out.detach()
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.03
    assert torch.allclose(out[kept].double(), ref[kept], atol=1e-5)               # survivors unscaled
    assert torch.allclose(h.grad[kept].double(), h64.grad[kept], atol=1e-5)
    dropped = ~kept & (ref.abs() > 1e-3)
    assert torch.all(h.grad[dropped] == 0)                                         # the same mask both ways


def test_softmax_dropout(kernels_or_fallback):
    torch.manual_seed(0)
    s = (torch.randn(4, 8, 50, 50) * 3).requires_grad_()
    g = torch.randn(4, 8, 50, 50)
    out = softmax_dropout(s, 0.2)
    out.backward(g)
    mask = (out != 0).double() * keep_scale(0.2)
    assert abs((out != 0).float().mean().item() - 0.8) < 0.01
    s64 = s.detach().double().requires_grad_()
    ref = s64.softmax(-1) * mask
    ref.backward(g.double())
    assert torch.allclose(out.double(), ref, atol=1e-6) and torch.allclose(s.grad.double(), s64.grad, atol=1e-6)


def test_fused_masks_are_repeatable_and_fresh(kernels):
    h = torch.randn(100_000)
    torch.manual_seed(3)
    a = gelu_dropout(h, 0.5)
    torch.manual_seed(3)
    assert torch.equal(gelu_dropout(h, 0.5), a)                                   # seeded by torch's generator
    b = gelu_dropout(h, 0.5)
    overlap = ((a != 0) == (b != 0)).float().mean().item()
    assert abs(overlap - 0.5) < 0.01                                               # independent of the last mask


def test_relu_bn_pool_unsupported_without_kernels(no_kernels):
    c = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    assert not relu_bn_pool_supported(c, nn.BatchNorm2d(8))
    model = CNNSeed().to(memory_format=torch.channels_last)
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    cpu_view(model).train()(x).sum().backward()                                    # falls back to the modules
    assert all(p.grad is not None for p in model.parameters())


def test_channel_limit_is_the_c_files_and_wider_convs_fall_back(kernels):
    """fused.c's MAX_CHANNELS is the one limit: Python reads it from the library, not a copy."""
    import re

    text = (K.SOURCE_DIR / "fused.c").read_text()
    limit = int(re.search(r"^#define MAX_CHANNELS (\d+)$", text, re.M).group(1))
    assert K.max_channels() == limit

    def conv_output(channels):
        return torch.randn(1, channels, 2, 2).contiguous(memory_format=torch.channels_last)

    bn = nn.BatchNorm2d(limit + 1)
    assert relu_bn_pool_supported(conv_output(limit), nn.BatchNorm2d(limit))
    assert not relu_bn_pool_supported(conv_output(limit + 1), bn)
    block = nn.Sequential(nn.Conv2d(1, limit + 1, 1), nn.ReLU(), bn, nn.MaxPool2d(2))
    block = block.to(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 4, 4).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(FusedConvBlock(block)(x), block(x))               # the modules, unfused


def test_kernel_cache_honours_fmbench_cache_dir_without_the_data_layer(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(tmp_path / "a"))
    assert K.cache_dir() == tmp_path / "a" / "kernels"
    monkeypatch.delenv("FMBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert K.cache_dir() == tmp_path / "xdg" / "fmbench" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert K.cache_dir() == tmp_path / "home" / ".cache" / "fmbench" / "kernels"
    # A fresh process builds the library into FMBENCH_CACHE_DIR and never imports fmbench.data.
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(tmp_path / "b"))
    code = ("import sys; from fmbench import kernels as K; built = K.library() is not None; "
            "print(built, 'fmbench.data' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    built, data_imported = out.split()
    assert data_imported == "False"
    assert (built == "True") == bool(list((tmp_path / "b" / "kernels").glob("fmbench-kernels-*.so")))


def test_vit_cpu_view_swaps_attention_and_mlp_and_keeps_names(monkeypatch):
    model = ViT(ViTConfig(depth=2, dropout=0.2))
    view = cpu_view(model)
    assert isinstance(view.blocks[0].attn, CpuAttention) and isinstance(view.blocks[1].mlp, FusedMLP)
    assert type(model.blocks[0].attn) is Attention and type(model.blocks[1].mlp) is MLP  # the model untouched
    assert list(view.state_dict()) == list(model.state_dict())                     # same names, same tensors
    assert all(a is b for a, b in zip(view.parameters(), model.parameters()))
    assert cpu_view(view) is view                                                  # a view of the view is itself
    monkeypatch.setenv("FMBENCH_FUSED", "0")
    assert cpu_view(model) is model                                                # the switch: run as written


def test_vit_cpu_view_trains_with_dropout(kernels_or_fallback):
    """Dropout > 0: the fused float32-score attention and GELU + dropout paths (C or PyTorch) train."""
    torch.manual_seed(0)
    model = ViT(ViTConfig(depth=2, dropout=0.2)).train()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    for autocast in (False, True):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = cpu_view(model)(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
