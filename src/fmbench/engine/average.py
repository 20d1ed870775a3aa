"""An exponential moving average of the weights (`--set ema=0.999`): the model a run validates and keeps.

Myrtle's CIFAR-10 bag of tricks averages the weights every 5 batches at 0.99 and airbench94 keeps a
"lookahead" average; timm's `ModelEma` and the Keras optimizers' `use_ema` average per step. Here
PyTorch's own `torch.optim.swa_utils.AveragedModel` holds the copy (parameters and BatchNorm buffers,
which it averages with `use_buffers=True`), updated after every optimizer step with the warmup of
TensorFlow's `ExponentialMovingAverage(decay, num_updates)` ("If passed, the actual decay rate used
is: `min(decay, (1 + num_updates) / (10 + num_updates))`"), so that the random initial weights fade
out within the first few dozen steps instead of the first 1 / (1 - ema):

    decay_t = min(ema, (1 + t) / (10 + t))      # t: updates so far
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel


def _ema_update(decay: float):
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # called with the tensors of one device and dtype: floats move towards the weights, counters copy
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = int(n_averaged.item())
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))
    return update


def weight_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """The average of `model`'s weights and buffers with `decay` per update; None when decay is 0."""
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy the parameters and buffers of `source` into `target` (same architecture) in place."""
    with torch.no_grad():
        for a, b in zip(target.state_dict().values(), source.state_dict().values(), strict=True):
            a.copy_(b)


@contextmanager
def holding(model: nn.Module, average: AveragedModel | None) -> Iterator[None]:
    """Within the block `model` holds the averaged weights; after it, its own again."""
    if average is None:
        yield
        return
    own = {k: v.clone() for k, v in model.state_dict().items()}
    copy_weights(average.module, model)
    try:
        yield
    finally:
        model.load_state_dict(own)
