"""Optimizers and learning-rate schedules, built from a TrainConfig.

Schedules are per optimizer step (a LambdaLR over `lr_factor`), so warmup and decay do not depend
on how many epochs a run happens to stop after.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fmbench.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (L2 in the gradient, as the study), AdamW (decoupled; no decay on biases and norms) or SGD
    (optionally with the norm layers' parameters at `bias_lr_scale` times the lr)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                weight_decay=cfg.weight_decay, foreach=True)
    if cfg.bias_lr_scale != 1:
        # airbench: BatchNorm biases (and here scales, if they learn) at 64x the lr, their decay divided
        # by as much (lr x decay, the shrink per step, unchanged). Weights first: the loop logs
        # param_groups[0]'s lr as the run's.
        scale, norm = cfg.bias_lr_scale, {id(p) for p in _norm_parameters(model)}
        params = [{"params": [p for p in params if id(p) not in norm]},
                  {"params": [p for p in params if id(p) in norm], "lr": cfg.lr * scale,
                   "weight_decay": cfg.weight_decay / scale}]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, foreach=True)


def _norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the model's normalisation layers (BatchNorm, LayerNorm, GroupNorm)."""
    kinds = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    return [p for m in model.modules() if isinstance(m, kinds) for p in m.parameters(recurse=False)]


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at optimizer step `step`: linear warmup, then the schedule."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "onecycle":
        return max(1.0 - progress, 0.0)
    return 1.0


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, steps_per_epoch))


def steps_per_epoch(n_train: int, batch_size: int, world: int = 1) -> int:
    return math.ceil((n_train // world) / batch_size)
