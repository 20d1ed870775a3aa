"""The model as the CPU engine runs it: the same parameters and buffers, faster layer sequences.

`cpu_view(model)` returns a module that shares every parameter and buffer with `model` (so the
optimizer, checkpoints and evaluation see one set of weights) but in which

- each `Conv2d -> ReLU -> BatchNorm2d -> MaxPool2d(2)` sequence runs the convolution and then
  one fused ReLU/BatchNorm/pool kernel (kernels/ops.relu_bn_pool), when its input allows;
- each ViT `Attention` is a `CpuAttention`: in training with dropout, float32 scores and one fused
  softmax + dropout pass (kernels/ops.softmax_dropout); otherwise plain matmuls and softmax;
- each ViT `MLP` is a `FusedMLP`: in training with dropout, GELU and the dropout mask in one pass
  over the wide hidden layer (kernels/ops.gelu_dropout), the survivors' scale folded into fc2;
- each `nn.Dropout` is a `FastDropout` (same p; see models/layers.py).

Nothing in `model` itself changes: its state dict, parameter names and forward stay as written.
Like torch.compile, this is an execution detail of the training and prediction loops, which call
`cpu_view` on CPU. The switch: FMBENCH_FUSED=0 (`use_fused()`) makes `cpu_view` return every model
as written (to compare or debug; slower). FMBENCH_KERNELS=0 only turns off the C kernels: the view
stays and its fused steps use PyTorch ops instead.
"""

from __future__ import annotations

import copy
import os
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.kernels.ops import gelu_dropout, relu_bn_pool, relu_bn_pool_supported, softmax_dropout
from fmbench.models.layers import FastDropout, keep_scale
from fmbench.models.vit import MLP, Attention

_views: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def use_fused() -> bool:
    """Whether `cpu_view` rewrites models: True unless the environment sets FMBENCH_FUSED=0."""
    return os.environ.get("FMBENCH_FUSED", "1") != "0"


class FusedConvBlock(nn.Module):
    """Conv2d -> [ReLU -> BatchNorm2d -> MaxPool2d(2) fused], sharing the original block's layers."""

    def __init__(self, block: nn.Sequential) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, _, bn, _ = self.block
        c = conv(x)
        if relu_bn_pool_supported(c, bn):
            return relu_bn_pool(c, bn)
        return self.block[3](self.block[2](self.block[1](c)))


class CpuAttention(nn.Module):
    """`Attention` as CPU training and inference run it, sharing its qkv, proj and proj_drop."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.heads, self.dropout = attn.heads, attn.dropout
        # The same attribute names as Attention: the view's state dict keys match the model's.
        self.qkv, self.proj, self.proj_drop = attn.qkv, attn.proj, _fast(attn.proj_drop)
        self.log_scale = attn.log_scale                                   # LSA's learned scale, or None

    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.log_scale is not None:
            # models/vit.locality_scores in fewer passes over memory: the learned scale on q (N x hs per
            # head; its gradient then reads q, not the N x N scores) and the diagonal's -inf added by
            # the matmul itself (baddbmm), instead of a scaled and then a masked copy of every score.
            B, nh, N, hs = q.shape
            mask = torch.zeros(N, N, dtype=q.dtype, device=q.device).fill_diagonal_(float("-inf"))
            att = torch.baddbmm(mask, (q * self.log_scale.exp()).reshape(B * nh, N, hs),
                                k.reshape(B * nh, N, hs).transpose(-2, -1))
            return att.view(B, nh, N, N)
        return (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)            # (B, nh, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                              # each (B, nh, N, hs)
        drop = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and drop > 0:
            # SDPA with dropout falls back to unfused math on CPU. Here: float32 scores (a float32
            # softmax is ~2x faster than bf16 on CPU) and softmax + dropout in one fused pass.
            with torch.autocast("cpu", enabled=False):
                q, k, v = q.float(), k.float(), v.float()
                x = softmax_dropout(self._scores(q, k), drop) @ v         # (B, nh, N, hs)
        elif x.device.type == "cpu" and self.log_scale is None:
            # With ~50 tokens, plain matmuls beat SDPA's CPU kernel (whose bf16 backward is ~5x slower).
            att = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)      # (B, nh, N, N)
            x = att.softmax(-1) @ v                                       # (B, nh, N, hs)
        elif self.log_scale is not None:                                  # LSA: no SDPA (a learned scale)
            att = self._scores(q, k).softmax(-1)
            x = (F.dropout(att, drop) if drop else att) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, nh, N, hs), as Attention
        x = x.transpose(1, 2).reshape(B, N, D)                            # (B, N, D)
        return self.proj_drop(self.proj(x))


class FusedMLP(nn.Sequential):
    """`MLP` (Linear -> GELU -> Dropout -> Linear -> Dropout) with GELU and dropout fused in CPU training."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__(*(_fast(m) for m in mlp))   # the same layers under the same names (0..4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc1, act, drop, fc2, out_drop = self
        if not (self.training and drop.p > 0 and x.device.type == "cpu" and isinstance(act, nn.GELU)
                and act.approximate == "none"):
            return out_drop(fc2(drop(act(fc1(x)))))
        # The hidden layer is the widest tensor: GELU and the 0/1 mask in one pass (kernels/ops.py),
        # and the survivors' scale folded into fc2's small weight instead of another pass.
        h = gelu_dropout(fc1(x), drop.p)                                  # (B, N, hidden)
        return out_drop(F.linear(h, fc2.weight * keep_scale(drop.p), fc2.bias))


def _fast(m: nn.Module) -> nn.Module:
    """A plain nn.Dropout as FastDropout; any other module as it is."""
    return FastDropout(m.p) if type(m) is nn.Dropout else m


def _is_conv_block(m: nn.Module) -> bool:
    if not (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward):
        return False
    layers = list(m)
    if len(layers) != 4:
        return False
    conv, relu, bn, pool = layers
    return (isinstance(conv, nn.Conv2d) and type(relu) is nn.ReLU and type(bn) is nn.BatchNorm2d
            and type(pool) is nn.MaxPool2d and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))
            and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1)) and not pool.ceil_mode
            and not pool.return_indices)


def _rewrite(m: nn.Module) -> nn.Module:
    if isinstance(m, (FusedConvBlock, CpuAttention, FusedMLP)):
        return m                             # already a view's layer: a view of a view is the view
    if _is_conv_block(m):
        return FusedConvBlock(m)
    # Exact types: a subclass may have its own forward, which the fused version would skip.
    if type(m) is Attention:
        return CpuAttention(m)
    if type(m) is MLP and len(m) == 5:
        return FusedMLP(m)
    if type(m) is nn.Dropout:
        return FastDropout(m.p)
    children = {name: _rewrite(child) for name, child in m.named_children()}
    if all(children[name] is child for name, child in m.named_children()):
        return m
    view = copy.copy(m)                      # shares parameters, buffers and unchanged children
    view._modules = {**m._modules, **children}
    return view


def cpu_view(model: nn.Module) -> nn.Module:
    """`model` with fused CPU layers (see the module docstring); `model` itself if nothing applies.

    Views are cached per model; wrappers (DistributedDataParallel, torch.compile) are left alone,
    and with FMBENCH_FUSED=0 every model is.
    """
    if not use_fused() or isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        return model
    view = _views.get(model)
    if view is None:
        view = _rewrite(model)
        _views[model] = view if view is not model else _SAME
    if view is _SAME:
        return model
    view.train(model.training)
    return view


_SAME = nn.Identity()   # cache marker: nothing to rewrite (a strong reference to the model would leak it)
