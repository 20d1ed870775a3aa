"""Checkpoints: weights in safetensors, training state via torch.save loaded with weights_only=True.

Everything is written to a temporary file and renamed, so a crash never leaves a half-written file.
`TrainState` is what a checkpoint must hold to continue a run exactly; `save_checkpoint` and
`restore` write and read it under the run directory's names (fmbench.rundir).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from fmbench import rundir as R
from fmbench.config import TrainConfig
from fmbench.engine import distributed as D
from fmbench.engine.average import weight_average
from fmbench.engine.optim import make_optimizer, make_scheduler, steps_per_epoch
from fmbench.engine.stopping import EarlyStopping
from fmbench.engine.tensorboard import EpochEvents
from fmbench.errors import RunDirError
from fmbench.fileio import atomic_path, write_bytes

logger = logging.getLogger(__name__)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically. Serialised in memory (a few MB) and written by our
    own writer, so that a full disk or a refused write is an OSError naming the file, and the old
    file, if any, stays intact."""
    write_bytes(path, save(tensors, metadata=metadata))


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict (tensors made contiguous, on CPU) to a safetensors file."""
    save_tensors(path, {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, metadata)


def load_weights(model: nn.Module, path: Path, expected_sha256: str | None = None) -> None:
    """Load safetensors weights into `model` (strict); a bad file or a wrong hash is a RunDirError."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file is missing")
    if expected_sha256 is not None:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected_sha256:
            raise RunDirError(f"{path}: SHA-256 mismatch (expected {expected_sha256}, got {actual}); refusing to load")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"{path}: not a readable safetensors file ({e})") from None
    device = next(model.parameters()).device
    reference = model.state_dict()
    state = {k: v.to(device=device, dtype=reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise RunDirError(f"{path}: weights do not match the model ({first})") from None


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Save optimizer/scheduler/early-stopping/RNG state (tensors and plain Python values only)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Load a training state saved by `save_state`; never unpickles arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path}: training state is missing") from None
    except Exception as e:  # corrupt file, or one holding objects weights_only refuses
        raise RunDirError(f"{path}: unreadable training state ({type(e).__name__}: {e})") from None


@dataclass
class TrainState:
    """What a checkpoint must hold to continue training exactly: optimizer, schedule, loss scaler,
    early stopping, the data order's generator, the weight average (with `ema`), and how far training got."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    stopper: EarlyStopping
    gen: torch.Generator
    average: AveragedModel | None = None   # engine/average.py; None without `ema`
    epoch: int = 0               # epochs finished
    train_time_s: float = 0.0

    def kept(self, raw: nn.Module) -> nn.Module:
        """The model that is validated and saved as best: the weight average, or `raw` itself."""
        return self.average.module if self.average is not None else raw

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "data": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"epoch": self.epoch, "train_time_s": self.train_time_s, "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "stopper": self.stopper.state_dict(), "rng": rng,
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "average": self.average.state_dict() if self.average is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["stopper"])
        if self.average is not None:
            if not state.get("average"):
                raise RunDirError("the checkpoint has no weight average to continue (was it trained without ema?)")
            self.average.load_state_dict(state["average"])
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["data"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch, self.train_time_s = int(state["epoch"]), float(state["train_time_s"])


def new_state(raw: nn.Module, cfg: TrainConfig, n_train: int, device: torch.device, precision: str) -> TrainState:
    """Fresh optimizer, schedule, scaler (fp16 only), early stopping, data generator and weight average."""
    opt = make_optimizer(raw, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch(n_train, cfg.batch_size, D.world_size()))
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    return TrainState(opt, sched, scaler, EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta), gen,
                      weight_average(raw, cfg.ema))


def restore(raw: nn.Module, state: TrainState, run_dir: Path) -> None:
    """Continue from the run's `last` checkpoint, if it has one; drop epoch records written after it."""
    if (run_dir / R.STATE).exists():
        state.load_state_dict(load_state(run_dir / R.STATE))
        load_weights(raw, run_dir / R.LAST)
        logger.info("resuming %s after epoch %d", run_dir, state.epoch)


def save_checkpoint(raw: nn.Module, state: TrainState, run_dir: Path, record: dict[str, Any], improved: bool,
                    events: EpochEvents) -> None:
    """Weights (best when improved: the validated model, the weight average with `ema`; and last: the
    trained weights), the training state, then the epoch's record in metrics.jsonl and the TensorBoard
    events: a record on disk always has its checkpoint."""
    if improved:
        save_weights(state.kept(raw), run_dir / R.BEST)
    save_weights(raw, run_dir / R.LAST)
    save_state(run_dir / R.STATE, state.state_dict())
    R.append_epoch(run_dir, record)
    events.write(record)
