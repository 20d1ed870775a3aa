"""Early stopping on a validation metric, as Keras' EarlyStopping (the loop restores the best weights
unless the recipe says `restore_best=False`, Keras' default)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Track the best value of `monitor`; stop after `patience` epochs without a `min_delta` gain.

    patience 0 disables stopping; the best epoch is still tracked (its weights are restored).
    """

    monitor: str = "val_loss"
    patience: int = 20
    min_delta: float = 0.0
    best: float = math.nan
    best_epoch: int = 0
    wait: int = 0

    @property
    def mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    def step(self, value: float, epoch: int) -> bool:
        """Record `value` for `epoch`; return True if it is a new best."""
        if math.isnan(self.best):
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.wait >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
