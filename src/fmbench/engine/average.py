"""An exponential moving average of the weights (`--set ema=0.999`): the model a run validates and keeps.

Myrtle's CIFAR-10 bag of tricks averages the weights every 5 batches at 0.99 and airbench94 keeps "a
lookahead EMA of the weights from epoch 3" (as issue 26 lists them); the Keras optimizers' `use_ema`
computes "an exponential moving average of the weights of the model (as the weight values change
after each training batch)". Here PyTorch's own `torch.optim.swa_utils.AveragedModel` holds the
copy (parameters and BatchNorm buffers, which it averages with `use_buffers=True`), updated after
every optimizer step with the warmup of TensorFlow's `ExponentialMovingAverage(decay, num_updates)`
("If passed, the actual decay rate used is: `min(decay, (1 + num_updates) / (10 + num_updates))`").
The first update copies the weights; the warmup then lets the average follow the fast-moving early
weights closely and only later average over about 1 / (1 - ema) steps:

    decay_t = min(ema, (1 + t) / (10 + t))      # t: updates so far

The average is kept as the run's best weights, so it needs `restore_best` (config.py refuses
`ema` without it). Under DistributedDataParallel each rank averages its own copy; the parameters
agree across ranks, BatchNorm buffers only up to DDP's per-step broadcast from rank 0. With fp16,
a step the GradScaler skips (an overflow) still counts as an update of the average.
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
        n = n_averaged.to(averaged[0].dtype)          # a tensor on the weights' device: no sync per step
        d = torch.clamp((1 + n) / (10 + n), max=decay)
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - d))
    return update


def weight_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """The average of `model`'s weights and buffers with `decay` per update; None when decay is 0."""
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)


@contextmanager
def holding(model: nn.Module, average: AveragedModel | None) -> Iterator[None]:
    """Within the block `model` holds the averaged weights; after it, its own again."""
    if average is None:
        yield
        return
    own = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(average.module.state_dict())     # in place: memory formats stay
    try:
        yield
    finally:
        model.load_state_dict(own)
