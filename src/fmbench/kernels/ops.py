"""Autograd functions over the C kernels (fmbench.kernels), with plain PyTorch fallbacks.

- `relu_bn_pool`: MaxPool2d(2)(BatchNorm2d(ReLU(c))) for the CNNs' conv blocks (engine/fuse.py
  checks `relu_bn_pool_supported` first);
- `gelu_dropout` and `softmax_dropout`: the ViT's MLP hidden layer and attention probabilities with
  their dropout, one pass each way; their masks are drawn from a seed taken from torch's default
  generator, so `torch.manual_seed` makes them repeatable. Without the kernels (no compiler,
  FMBENCH_KERNELS=0) they use `keep_mask`, the same statistics as FastDropout (models/layers.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench import kernels as K
from fmbench.models.layers import LANES, keep_mask, keep_scale


class _ReluBNPool(torch.autograd.Function):
    """MaxPool2d(2)(BatchNorm2d(ReLU(c))) on a channels-last conv output, with fused C kernels.

    Same arithmetic as the three modules (batch statistics in training, running statistics in
    eval, the same running-average update); the max-pool gradient goes to the first maximum of
    each window, as nn.MaxPool2d. Statistics are accumulated in float64.
    """

    @staticmethod
    def forward(ctx, c, weight, bias, bn: nn.BatchNorm2d):
        B, C, H, W = c.shape
        Ho, Wo = H // 2, W // 2
        x = c.permute(0, 2, 3, 1)                                        # (B, H, W, C), contiguous
        if bn.training:
            total = torch.zeros(2, C, dtype=torch.float64)                # sum and sum of squares of relu(c)
            K.fn("rbp_stats", c.dtype)(K.ptr(x), B * H * W, C, K.ptr(total))
            m = B * H * W
            mean = total[0] / m
            var = (total[1] / m - mean * mean).clamp_(min=0)
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                momentum = bn.momentum if bn.momentum is not None else 1 / bn.num_batches_tracked.item()
                bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
                bn.running_var.lerp_((var * m / max(m - 1, 1)).to(bn.running_var.dtype), momentum)
            mean, invstd = mean.float(), (var + bn.eps).rsqrt().float()
        else:
            mean, invstd = bn.running_mean.float(), (bn.running_var.float() + bn.eps).rsqrt()
        a = (weight.float() * invstd).contiguous()
        b = (bias.float() - mean * a).contiguous()
        y = torch.empty(B, Ho, Wo, C, dtype=c.dtype)
        rwin = torch.empty_like(y)
        idx = torch.empty(B, Ho, Wo, C, dtype=torch.uint8)
        K.fn("rbp_pool", c.dtype)(K.ptr(x), B, H, W, C, K.ptr(a), K.ptr(b), K.ptr(y), K.ptr(idx), K.ptr(rwin))
        ctx.save_for_backward(c, idx, rwin, a, mean, invstd)
        ctx.batch_stats = bn.training
        return y.permute(0, 3, 1, 2)                                     # (B, C, Ho, Wo), channels-last

    @staticmethod
    def backward(ctx, gy):
        c, idx, rwin, a, mean, invstd = ctx.saved_tensors
        B, C, H, W = c.shape
        Ho, Wo = H // 2, W // 2
        x = c.permute(0, 2, 3, 1)
        g = gy.to(c.dtype).permute(0, 2, 3, 1).contiguous()             # (B, Ho, Wo, C)
        total = torch.zeros(2, C, dtype=torch.float64)
        K.fn("rbp_gsum", c.dtype)(K.ptr(g), K.ptr(rwin), B * Ho * Wo, C, K.ptr(mean), K.ptr(invstd), K.ptr(total))
        total = total.float()
        dbeta, dgamma = total[0], total[1]
        m = B * H * W
        # With batch statistics, the gradient also flows through the mean and variance.
        k1 = (dbeta / m).contiguous() if ctx.batch_stats else torch.zeros(C)
        k2 = (dgamma / m).contiguous() if ctx.batch_stats else torch.zeros(C)
        dx = torch.empty(B, H, W, C, dtype=c.dtype)
        K.fn("rbp_bwd", c.dtype)(K.ptr(x), K.ptr(g), K.ptr(idx), B, H, W, C, K.ptr(a), K.ptr(mean), K.ptr(invstd),
                                 K.ptr(k1), K.ptr(k2), K.ptr(dx))
        return dx.permute(0, 3, 1, 2), dgamma, dbeta, None


def relu_bn_pool_supported(c: torch.Tensor, bn: nn.BatchNorm2d) -> bool:
    """Whether `relu_bn_pool` can run this input (CPU, channels-last, fp32/bf16, kernels built)."""
    # The channel limit is fused.c's MAX_CHANNELS (its per-channel sums live on the C stack).
    return (c.device.type == "cpu" and c.dim() == 4 and c.shape[2] >= 2 and c.shape[3] >= 2
            and c.is_contiguous(memory_format=torch.channels_last) and bn.affine and bn.track_running_stats
            and K.supports(c.dtype) and c.shape[1] <= K.max_channels())


def relu_bn_pool(c: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """MaxPool2d(2)(bn(relu(c))) in two fused passes forward and one backward (see _ReluBNPool)."""
    return _ReluBNPool.apply(c, bn.weight, bn.bias, bn)


def _seed() -> int:
    """A 32-bit seed for a counter-based dropout mask, drawn from torch's default generator."""
    return int(torch.randint(0, 2 ** 32, (), dtype=torch.int64).item())


class _GeluDropout(torch.autograd.Function):
    """gelu(h) * mask with the mask made from a seed in C (kernels/fused_body.h): one pass each way.

    The survivors' scale is left to the caller (who folds it into the next layer's weight).
    """

    @staticmethod
    def forward(ctx, h, p: float):
        h = h.contiguous()
        seed, keep = _seed(), round((1 - p) * LANES)
        a = torch.empty_like(h)
        K.fn("gelu_drop_fwd", h.dtype)(K.ptr(h), K.ptr(a), h.numel(), seed, keep)
        ctx.save_for_backward(h)
        ctx.mask = (seed, keep)
        return a

    @staticmethod
    def backward(ctx, ga):
        (h,) = ctx.saved_tensors
        seed, keep = ctx.mask
        ga = ga.to(h.dtype).contiguous()
        gh = torch.empty_like(h)
        K.fn("gelu_drop_bwd", h.dtype)(K.ptr(ga), K.ptr(h), K.ptr(gh), h.numel(), seed, keep)
        return gh, None


class _SoftmaxDropout(torch.autograd.Function):
    """dropout_p(softmax(s, -1)) in one pass each way, the mask made from a seed in C."""

    @staticmethod
    def forward(ctx, s, p: float):
        s = s.contiguous()
        seed, keep = _seed(), round((1 - p) * LANES)
        probs, out = torch.empty_like(s), torch.empty_like(s)
        n = s.shape[-1]
        K.fn("softmax_drop_fwd", s.dtype)(K.ptr(s), K.ptr(probs), K.ptr(out), s.numel() // n, n, seed, keep,
                                          keep_scale(p))
        ctx.save_for_backward(probs)
        ctx.mask = (seed, keep, keep_scale(p))
        return out

    @staticmethod
    def backward(ctx, g):
        (probs,) = ctx.saved_tensors
        seed, keep, scale = ctx.mask
        g = g.to(probs.dtype).contiguous()
        gs = torch.empty_like(probs)
        n = probs.shape[-1]
        K.fn("softmax_drop_bwd", probs.dtype)(K.ptr(g), K.ptr(probs), K.ptr(gs), probs.numel() // n, n, seed, keep, scale)
        return gs, None


def _fused_ok(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and K.supports(x.dtype)


def gelu_dropout(h: torch.Tensor, p: float) -> torch.Tensor:
    """gelu(h) with dropout p in training, *without* the 1 / (1 - p) scale (see keep_scale)."""
    if _fused_ok(h):
        return _GeluDropout.apply(h, p)
    return F.gelu(h) * keep_mask(h.shape, p, h.dtype, h.device)


def softmax_dropout(s: torch.Tensor, p: float) -> torch.Tensor:
    """dropout_p(softmax(s, -1)), scaled as nn.Dropout, for CPU training."""
    if _fused_ok(s):
        return _SoftmaxDropout.apply(s, p)
    att = s.softmax(-1)
    return att * keep_mask(att.shape, p, att.dtype, att.device).mul_(keep_scale(p))
