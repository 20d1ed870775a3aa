"""benchmarks/conv_roofline.py: the im2col reference convolution, the per-layer table and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)


@pytest.fixture(scope="module")
def cr(benchmark_script):
    return benchmark_script("conv_roofline")


@pytest.mark.parametrize("padding", [(0, 0), (1, 1)])
def test_im2col_matches_conv2d_and_its_gradients(cr, padding) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    y = cr.Im2colConv.apply(x, w, padding)
    ref = F.conv2d(x, w, padding=padding)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(ref)
    dx, dw = torch.autograd.grad(y, (x, w), g)
    rdx, rdw = torch.autograd.grad(ref, (x, w), g)
    torch.testing.assert_close(dx, rdx)
    torch.testing.assert_close(dw, rdw)


def test_flops_count_multiply_adds_twice(cr) -> None:
    conv = nn.Conv2d(64, 128, 3)
    flops, out = cr.conv_flops(conv, torch.Size([256, 64, 13, 13]))
    assert out == (256, 128, 11, 11) and flops == 2 * 256 * 11 * 11 * 128 * 64 * 9   # 4.57 GFLOP
    flops, out = cr.conv_flops(nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.Size([1, 8, 28, 28]))
    assert out == (1, 8, 14, 14)


def test_table_names_every_convolution_against_the_host_matmul(cr, capsys) -> None:
    assert cr.main(["--model", "cnn_seed", "--batch", "4", "--repeats", "1", "--im2col"]) == 0
    out = capsys.readouterr().out
    assert "host 2048x2048 matmul" in out and "im2col ms" in out
    assert "features.0.0" in out and "features.1.0" in out and "all convolutions" in out
    assert "4x64x13x13" in out                                         # the second layer's input shape


def test_a_model_without_convolutions_is_one_line(cr, capsys) -> None:
    assert cr.main(["--model", "vit_seed", "--batch", "2", "--repeats", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: vit_seed has no Conv2d layers"]


def test_unknown_model_and_bad_repeats(cr, capsys) -> None:
    assert cr.main(["--model", "resnet9000"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as e:
        cr.main(["--repeats", "0"])
    assert e.value.code == 2 and "--repeats must be >= 1" in capsys.readouterr().err
