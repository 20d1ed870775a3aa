"""Reusable layers: a dropout that is fast on CPU, and test-time flip averaging.

`nn.Dropout` on CPU draws one Bernoulli sample per element from the Mersenne Twister (~10-15 ns
each, one thread): in the study's ViT that was ~70% of a training step. `keep_mask` draws 64 random
bits per 4 elements and compares each 16-bit lane with a threshold (~1.5 ns per element in all).

Statistically this is the usual dropout: every element is kept independently with probability
`k / 65536`, `k = round((1 - p) * 65536)`, and survivors are scaled by `65536 / k`, so the
expectation is exact. The only difference is that p is quantised to 1/65536: for p = 0.2 the
drop probability is 0.199997. On other devices `F.dropout` is already fast and is used instead.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

LANES = 1 << 16


def keep_scale(p: float) -> float:
    """The factor survivors are multiplied by: 1 / (exact keep probability)."""
    return LANES / round((1 - p) * LANES)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device,
              generator: torch.Generator | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """A (shape) tensor of 0s and 1s, each 1 with probability 1 - p (quantised to 1/65536).

    Uses the default generator unless one is given, so `torch.manual_seed` makes it repeatable
    and `torch.get_rng_state` captures it (as for nn.Dropout).
    """
    if p == 0:
        return torch.ones(shape, dtype=dtype, device=device) if out is None else out.fill_(1)
    n = math.prod(shape)
    # from=-2**63, to=None: the full 64-bit range. random_() without arguments leaves the top bit
    # at 0, which would make every fourth 16-bit lane non-uniform.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None, generator=generator)
    lanes = bits.view(torch.int16)[:n].view(shape)           # uniform over [-32768, 32767]
    threshold = round((1 - p) * LANES) - LANES // 2
    # lt with a float `out` writes 0/1 directly in the activation dtype (a bool mask would need a
    # slow conversion, and bool * float takes PyTorch's slow mixed-dtype path).
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=device)
    return torch.lt(lanes, threshold, out=out)


class FastDropout(nn.Dropout):
    """Drop-in `nn.Dropout` (same p, same statistics; see the module docstring) that is fast on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.inplace:
            return F.dropout(x, self.p, True, self.inplace)
        return x * keep_mask(x.shape, self.p, x.dtype, x.device).mul_(keep_scale(self.p))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul in (bf16 under CPU autocast), else x's own."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


class _ChunkedMLP(torch.autograd.Function):
    """fc2(dropout(gelu(fc1(x)))) over row chunks, so the wide hidden layer stays in cache.

    Only the 0/1 dropout mask of the hidden layer is kept for backward; fc1 and GELU are recomputed
    chunk by chunk. On a CPU this trades ~20% more MLP FLOPs for far less memory traffic.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, p: float, chunk: int):
        dt = _compute_dtype(x)
        shape, hidden, out_dim = x.shape, w1.shape[0], w2.shape[0]
        x2 = x.reshape(-1, shape[-1]).to(dt)
        s = keep_scale(p) if p > 0 else 1.0
        w1c, b1c, w2s, b2c = w1.to(dt), b1.to(dt), (w2 * s).to(dt), b2.to(dt)
        rows = x2.shape[0]
        out = torch.empty(rows, out_dim, dtype=dt)
        masks = torch.empty(rows, hidden, dtype=dt) if p > 0 else None
        with torch.autocast("cpu", enabled=False):
            for i in range(0, rows, chunk):
                a = F.gelu(torch.addmm(b1c, x2[i:i + chunk], w1c.t()))      # (c, hidden)
                if masks is not None:
                    a.mul_(keep_mask(a.shape, p, dt, a.device, out=masks[i:i + chunk]))
                torch.addmm(b2c, a, w2s.t(), out=out[i:i + chunk])
        ctx.save_for_backward(x2, w1c, b1c, w2s, masks)
        ctx.meta = (p, chunk, shape, x.dtype, w1.dtype, w2.dtype)
        return out.view(*shape[:-1], out_dim)

    @staticmethod
    def backward(ctx, gy):
        x2, w1c, b1c, w2s, masks = ctx.saved_tensors
        p, chunk, shape, x_dtype, w1_dtype, w2_dtype = ctx.meta
        dt = x2.dtype
        gy2 = gy.reshape(-1, gy.shape[-1]).to(dt)
        rows = x2.shape[0]
        gx = torch.empty_like(x2)
        gw1 = torch.zeros(w1c.shape, dtype=torch.float32)
        gb1 = torch.zeros(b1c.shape, dtype=torch.float32)
        gw2 = torch.zeros(w2s.shape, dtype=torch.float32)
        with torch.autocast("cpu", enabled=False):
            for i in range(0, rows, chunk):
                xc, gyc = x2[i:i + chunk], gy2[i:i + chunk]
                h = torch.addmm(b1c, xc, w1c.t())                            # recompute (c, hidden)
                a = F.gelu(h)
                ga = gyc @ w2s                                               # (c, hidden)
                if masks is not None:
                    m = masks[i:i + chunk]
                    a.mul_(m)
                    ga.mul_(m)
                gw2 += (gyc.t() @ a).float()
                gh = torch.ops.aten.gelu_backward(ga, h)
                gw1 += (gh.t() @ xc).float()
                gb1 += gh.sum(0, dtype=torch.float32)
                torch.mm(gh, w1c, out=gx[i:i + chunk])
        gw2 *= keep_scale(p) if p > 0 else 1.0
        gb2 = gy2.sum(0, dtype=torch.float32)
        return (gx.view(shape).to(x_dtype), gw1.to(w1_dtype), gb1.to(w1_dtype), gw2.to(w2_dtype),
                gb2.to(w2_dtype), None, None)


def chunked_mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, p: float, chunk: int = 256) -> torch.Tensor:
    """fc2(dropout_p(gelu(fc1(x)))) in training on CPU, computed chunk by chunk (see _ChunkedMLP)."""
    return _ChunkedMLP.apply(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, p, chunk)


class _ChunkedAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d)) with dropout, times v, over batch chunks, in float32.

    Keeps only the 0/1 dropout mask of the probabilities for backward (scores and softmax are
    recomputed), so each (chunk, heads, N, N) block is produced and consumed while in cache.
    """

    @staticmethod
    def forward(ctx, q, k, v, p: float, chunk: int):
        in_dtype = q.dtype
        q, k, v = q.float(), k.float(), v.float()
        scale = q.shape[-1] ** -0.5
        s = keep_scale(p) if p > 0 else 1.0
        B, H, N, _ = q.shape
        out = torch.empty(v.shape)
        masks = torch.empty(B, H, N, N) if p > 0 else None
        with torch.autocast("cpu", enabled=False):
            for i in range(0, B, chunk):
                att = torch.matmul(q[i:i + chunk] * scale, k[i:i + chunk].transpose(-2, -1)).softmax(-1)
                if masks is not None:
                    att.mul_(keep_mask(att.shape, p, att.dtype, att.device, out=masks[i:i + chunk]))
                torch.matmul(att, v[i:i + chunk] * s, out=out[i:i + chunk])
        ctx.save_for_backward(q, k, v, masks)
        ctx.meta = (p, chunk, in_dtype)
        return out.to(in_dtype)

    @staticmethod
    def backward(ctx, go):
        q, k, v, masks = ctx.saved_tensors
        p, chunk, in_dtype = ctx.meta
        go = go.float()
        scale = q.shape[-1] ** -0.5
        s = keep_scale(p) if p > 0 else 1.0
        gq, gk, gv = torch.empty(q.shape), torch.empty(k.shape), torch.empty(v.shape)
        with torch.autocast("cpu", enabled=False):
            for i in range(0, q.shape[0], chunk):
                j = slice(i, i + chunk)
                qs, kc, vs, goc = q[j] * scale, k[j], v[j] * s, go[j]
                att = torch.matmul(qs, kc.transpose(-2, -1)).softmax(-1)       # recompute (c, H, N, N)
                kept = att * masks[j] if masks is not None else att
                torch.matmul(kept.transpose(-2, -1), goc, out=gv[j]).mul_(s)
                ga = torch.matmul(goc, vs.transpose(-2, -1))
                if masks is not None:
                    ga.mul_(masks[j])
                gs = torch.ops.aten._softmax_backward_data(ga, att, -1, att.dtype)
                torch.matmul(gs, kc, out=gq[j]).mul_(scale)
                torch.matmul(gs.transpose(-2, -1), qs, out=gk[j])
        return gq.to(in_dtype), gk.to(in_dtype), gv.to(in_dtype), None, None


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, chunk: int = 16) -> torch.Tensor:
    """Attention with dropout p on the probabilities, for CPU training (see _ChunkedAttention)."""
    return _ChunkedAttention.apply(q, k, v, p, chunk)


class _ReluBNPool(torch.autograd.Function):
    """MaxPool2d(2)(BatchNorm2d(ReLU(c))) on a channels-last conv output, with fused C kernels.

    Same arithmetic as the three modules (batch statistics in training, running statistics in
    eval, the same running-average update); the max-pool gradient goes to the first maximum of
    each window, as nn.MaxPool2d. Statistics are accumulated in float64.
    """

    @staticmethod
    def forward(ctx, c, weight, bias, bn: nn.BatchNorm2d):
        from fmbench.models import kernels as K

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
        from fmbench.models import kernels as K

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
    from fmbench.models import kernels as K

    return (c.device.type == "cpu" and c.dim() == 4 and c.shape[2] >= 2 and c.shape[3] >= 2
            and c.is_contiguous(memory_format=torch.channels_last) and c.shape[1] <= 1024
            and bn.affine and bn.track_running_stats and K.supports(c.dtype))


def relu_bn_pool(c: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """MaxPool2d(2)(bn(relu(c))) in two fused passes forward and one backward (see _ReluBNPool)."""
    return _ReluBNPool.apply(c, bn.weight, bn.bias, bn)


def _seed() -> int:
    """A 32-bit seed for a counter-based dropout mask, drawn from torch's default generator."""
    return int(torch.randint(0, 2 ** 32, (), dtype=torch.int64).item())


class _GeluDropout(torch.autograd.Function):
    """gelu(h) * mask with the mask made from a seed in C (models/kernels.py): one pass each way.

    The survivors' scale is left to the caller (who folds it into the next layer's weight).
    """

    @staticmethod
    def forward(ctx, h, p: float):
        from fmbench.models import kernels as K

        h = h.contiguous()
        seed, keep = _seed(), round((1 - p) * LANES)
        a = torch.empty_like(h)
        K.fn("gelu_drop_fwd", h.dtype)(K.ptr(h), K.ptr(a), h.numel(), seed, keep)
        ctx.save_for_backward(h)
        ctx.mask = (seed, keep)
        return a

    @staticmethod
    def backward(ctx, ga):
        from fmbench.models import kernels as K

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
        from fmbench.models import kernels as K

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
        from fmbench.models import kernels as K

        (probs,) = ctx.saved_tensors
        seed, keep, scale = ctx.mask
        g = g.to(probs.dtype).contiguous()
        gs = torch.empty_like(probs)
        n = probs.shape[-1]
        K.fn("softmax_drop_bwd", probs.dtype)(K.ptr(g), K.ptr(probs), K.ptr(gs), probs.numel() // n, n, seed, keep, scale)
        return gs, None


def _fused_ok(x: torch.Tensor) -> bool:
    from fmbench.models import kernels as K

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


def flip_averaged(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Test-time flip averaging: the mean of logits(x) and logits(x mirrored left-right), one batched pass."""
    B = x.shape[0]
    both = logits(torch.cat([x, x.flip(-1)]))                # (2B, classes)
    return (both[:B] + both[B:]) / 2
