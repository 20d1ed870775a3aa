#!/usr/bin/env python
"""How near the host's matmul speed a model's convolutions train, each timed alone at its training shape.

    python benchmarks/conv_roofline.py [--model cnn_seed] [--preset fast] [--batch N] [--repeats 20] [--im2col]

For every Conv2d of the model (its input shape found by one forward pass at the preset's batch
size), times forward + backward (the weight gradient, and the input gradient past the first layer,
as in training) on random
channels-last inputs in the preset's precision, and prints GFLOP/s beside a 2048x2048 matmul in
the same precision measured in the same run (`engine.speed.matmul_gflops`): the ratio says how
much a faster convolution kernel could still win, whatever the host's load that day.
With `--im2col`, also times a plain-PyTorch im2col convolution (a strided view of the padded
input, one matmul each way, the input gradient gathered back by kh*kw strided adds), the obvious
hand-written alternative to oneDNN's kernel.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see docs/performance.md

import argparse  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fmbench.engine.speed import matmul_gflops, median_seconds  # noqa: E402
from fmbench.errors import FmbenchError  # noqa: E402
from fmbench.models import build_model, resolve_config  # noqa: E402
from fmbench.runtime import autocast, choose_precision, keep_freed_memory, set_threads  # noqa: E402


class Im2colConv(torch.autograd.Function):
    """conv2d (stride 1, no groups, no bias) as one matmul over a strided view of the NHWC input."""

    @staticmethod
    def forward(ctx, x, w, padding: tuple[int, int]):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        B, C, H, W = x.shape
        O, _, kh, kw = w.shape
        Ho, Wo = H - kh + 1, W - kw + 1
        xn = x.permute(0, 2, 3, 1).contiguous()                                   # (B, H, W, C)
        s = xn.stride()
        cols = xn.as_strided((B, Ho, Wo, kh, kw, C), (s[0], s[1], s[2], s[1], s[2], s[3])).reshape(-1, kh * kw * C)
        wm = w.permute(0, 2, 3, 1).reshape(O, -1)                                 # (O, kh*kw*C)
        ctx.save_for_backward(cols, wm)
        ctx.shape, ctx.padding = (B, C, H, W, kh, kw), padding
        return (cols @ wm.t()).view(B, Ho, Wo, O).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, gy):
        cols, wm = ctx.saved_tensors
        B, C, H, W, kh, kw = ctx.shape
        Ho, Wo = H - kh + 1, W - kw + 1
        g = gy.permute(0, 2, 3, 1).reshape(B * Ho * Wo, -1)
        gw = (g.t() @ cols).view(-1, kh, kw, C).permute(0, 3, 1, 2)
        gc = (g @ wm).view(B, Ho, Wo, kh, kw, C)
        dx = torch.zeros(B, H, W, C, dtype=gc.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, i:i + Ho, j:j + Wo] += gc[:, :, :, i, j]
        ph, pw = ctx.padding
        return dx[:, ph:H - ph, pw:W - pw].permute(0, 3, 1, 2), gw, None


def conv_shapes(model: nn.Module, batch: int) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """(name, layer, input shape) of every Conv2d, from one forward pass on a random batch."""
    seen: list[tuple[str, nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda m, a, name=name: seen.append((name, m, a[0].shape)))
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.rand(batch, 1, 28, 28))
    for h in hooks:
        h.remove()
    return seen


def conv_flops(conv: nn.Conv2d, shape: torch.Size) -> tuple[float, tuple[int, ...]]:
    """Forward FLOPs (2 per multiply-add) and the output shape."""
    B, C, H, W = shape
    kh, kw = conv.kernel_size
    Ho = (H + 2 * conv.padding[0] - conv.dilation[0] * (kh - 1) - 1) // conv.stride[0] + 1
    Wo = (W + 2 * conv.padding[1] - conv.dilation[1] * (kw - 1) - 1) // conv.stride[1] + 1
    return 2.0 * B * Ho * Wo * conv.out_channels * C // conv.groups * kh * kw, (B, conv.out_channels, Ho, Wo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn_seed")
    p.add_argument("--preset", default="fast")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: the preset's)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--im2col", action="store_true", help="also time a plain-PyTorch im2col convolution")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.batch < 0:
        p.error("--repeats must be >= 1 and --batch >= 0")
    try:
        model_cfg, cfg = resolve_config(args.model, args.preset)
    except FmbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    set_threads(cfg.threads)
    keep_freed_memory()   # as the training loop does: without it each call page-faults its output in
    precision = choose_precision(cfg.precision, torch.device("cpu"))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    batch = args.batch or cfg.batch_size
    convs = conv_shapes(build_model(args.model, model_cfg), batch)
    if not convs:
        print(f"error: {args.model} has no Conv2d layers", file=sys.stderr)
        return 2
    peak = matmul_gflops(dtype)
    print(f"{args.model} --preset {args.preset}: batch {batch}, {precision}, {torch.get_num_threads()} threads; "
          f"host 2048x2048 matmul {peak:.0f} GFLOP/s")
    print(f"{'layer':<24} {'input':<18} {'GFLOP':>6} {'ms':>7} {'GFLOP/s':>8} {'of matmul':>9}"
          + (f" {'im2col ms':>10}" if args.im2col else ""))
    total_ms = total_flops = 0.0
    for name, conv, shape in convs:
        flops, out_shape = conv_flops(conv, shape)
        # forward, weight gradient and (past the first layer, whose input is the image) input gradient
        needs_dx = name != convs[0][0]
        flops *= 3 if needs_dx else 2
        fmt = torch.channels_last
        x = torch.randn(shape).to(dtype if needs_dx else torch.float32).contiguous(memory_format=fmt).requires_grad_(needs_dx)
        w = conv.weight.detach().contiguous(memory_format=fmt).requires_grad_()   # float32, as trained
        b = None if conv.bias is None else conv.bias.detach().requires_grad_()
        gy = torch.randn(out_shape).to(dtype).contiguous(memory_format=fmt)

        def onednn():
            with autocast(torch.device("cpu"), precision):    # as the training loop runs it
                y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
            y.backward(gy)
        ms = 1000 * median_seconds(onednn, warmup=3, repeats=args.repeats)
        total_ms, total_flops = total_ms + ms, total_flops + flops
        line = (f"{name:<24} {'x'.join(map(str, shape)):<18} {flops / 1e9:>6.2f} {ms:>7.2f} "
                f"{flops / ms / 1e6:>8.0f} {flops / ms / 1e6 / peak:>9.0%}")
        if args.im2col:
            if conv.stride == (1, 1) and conv.groups == 1 and conv.dilation == (1, 1):
                xd, wd = x.detach().to(dtype).requires_grad_(needs_dx), w.detach().to(dtype).requires_grad_()
                im2col = median_seconds(lambda: Im2colConv.apply(xd, wd, conv.padding).backward(gy), 3, args.repeats)
                line += f" {1000 * im2col:>10.2f}"
            else:
                line += f" {'(strided)':>10}"
        print(line)
    print(f"{'all convolutions':<24} {'':<18} {total_flops / 1e9:>6.2f} {total_ms:>7.2f} "
          f"{total_flops / total_ms / 1e6:>8.0f} {total_flops / total_ms / 1e6 / peak:>9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
