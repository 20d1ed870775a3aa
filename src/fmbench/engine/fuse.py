"""The model as the CPU engine runs it: the same parameters and buffers, faster layer sequences.

`cpu_view(model)` returns a module that shares every parameter and buffer with `model` (so the
optimizer, checkpoints and evaluation see one set of weights) but in which

- each `Conv2d -> ReLU -> BatchNorm2d -> MaxPool2d(2)` sequence runs the convolution and then
  one fused ReLU/BatchNorm/pool kernel (models/layers.relu_bn_pool), when its input allows;
- each `nn.Dropout` is a `FastDropout` (same p; see models/layers.py).

Nothing in `model` itself changes: its state dict, parameter names and forward stay as written.
Like torch.compile, this is an execution detail of the training and prediction loops.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn as nn

from fmbench.models.layers import FastDropout, relu_bn_pool, relu_bn_pool_supported

_views: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


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
    if _is_conv_block(m):
        return FusedConvBlock(m)
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

    Views are cached per model; wrappers (DistributedDataParallel, torch.compile) are left alone.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
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
