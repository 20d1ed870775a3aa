"""The training loop: `train_one_epoch`, `evaluate` and `fit`, over in-memory uint8 tensors.

Batches are index slices of a per-epoch permutation; augmentation runs on whole batches on
the model's device. Running train metrics include augmentation and dropout (as Keras reports
them); validation and the final evaluation are clean (eval mode, no augmentation).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from fmbench import rundir as R
from fmbench.config import TrainConfig
from fmbench.data.batches import Splits, augment, to_input
from fmbench.engine import distributed as D
from fmbench.engine.average import holding
from fmbench.engine.checkpoint import TrainState, load_weights, new_state, restore, save_checkpoint
from fmbench.engine.fuse import cpu_view
from fmbench.engine.metrics import confusion_update, report
from fmbench.engine.optim import steps_per_epoch
from fmbench.engine.tensorboard import EpochEvents
from fmbench.errors import TrainingDiverged
from fmbench.runtime import autocast, keep_freed_memory

logger = logging.getLogger(__name__)

NUM_CLASSES = 10


def train_one_epoch(model: nn.Module, raw: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                    opt: torch.optim.Optimizer, sched, gen: torch.Generator, precision: str,
                    on_step: Callable[[int, torch.Tensor], None] | None = None,
                    scaler: torch.amp.GradScaler | None = None,
                    average: AveragedModel | None = None) -> dict[str, float]:
    """One pass over this rank's shard of a fresh permutation; returns running loss/accuracy/F1.
    `average` (engine/average.py), when given, follows `raw`'s weights after every step."""
    model.train()
    device = x.device
    if device.type == "cpu":
        keep_freed_memory()
        if model is raw:
            model = cpu_view(raw)  # same weights, fused CPU layers (engine/fuse.py)
    world, rank = D.world_size(), D.rank()
    perm = torch.randperm(len(y), generator=gen, device=device)
    perm = perm[rank::world][: len(y) // world]  # equal shard sizes keep ranks in step
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long, device=device)
    regularizer = getattr(raw, "regularization_loss", None)
    for step, start in enumerate(range(0, len(perm), cfg.batch_size)):
        idx = perm[start:start + cfg.batch_size]
        if len(idx) < 2 and step > 0:
            break  # a batch of one breaks BatchNorm; it only happens with odd sizes
        xb = augment(to_input(x[idx], cfg.channels_last), cfg, gen)
        yb = y[idx]
        with autocast(device, precision):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        if regularizer is not None:
            loss = loss + regularizer()
        opt.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
        sched.step()
        if average is not None:
            average.update_parameters(raw)
        with torch.no_grad():
            loss_sum += loss.detach() * len(idx)
            confusion_update(cm, yb, logits.argmax(1))
        if on_step is not None:
            on_step(step, loss)
    D.all_reduce_sum_(loss_sum)
    D.all_reduce_sum_(cm)
    r = report(cm, 0.0)
    return {"loss": loss_sum.item() / max(r["n"], 1), "accuracy": r["accuracy"], "f1": r["f1_weighted"]}


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int, precision: str,
                   channels_last: bool = False) -> torch.Tensor:
    """Float32 logits (N, C) for uint8 images (N, 28, 28), in large no-grad batches."""
    model.eval()
    if x.device.type == "cpu":
        keep_freed_memory()
        model = cpu_view(model)
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(x.device, precision):
            out.append(model(to_input(x[start:start + batch_size], channels_last)).float())
    return torch.cat(out) if out else torch.zeros(0, NUM_CLASSES, device=x.device)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, precision: str,
             shard: bool = False) -> tuple[dict, torch.Tensor]:
    """Clean metrics of one split (see metrics.report) and its softmax probabilities.

    With `shard`, each rank evaluates every world_size-th image and the sums are reduced.
    """
    if shard and D.world_size() > 1:
        x, y = x[D.rank()::D.world_size()], y[D.rank()::D.world_size()]
    logits = predict_logits(model, x, cfg.eval_batch_size, precision, cfg.channels_last)
    loss_sum = F.cross_entropy(logits, y, reduction="sum").double().reshape(1)
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long, device=x.device)
    confusion_update(cm, y, logits.argmax(1))
    if shard:
        D.all_reduce_sum_(loss_sum)
        D.all_reduce_sum_(cm)
    n = max(int(cm.sum().item()), 1)
    return report(cm.cpu(), loss_sum.item() / n), logits.softmax(1)


def evaluate_splits(model: nn.Module, splits: Splits, names: tuple[str, ...], cfg: TrainConfig, precision: str,
                    classes=None) -> tuple[dict[str, dict], torch.Tensor | None]:
    """Clean metrics of the named splits (their per-class rows named by `classes`) and the test
    split's probabilities (None when it is not named)."""
    metrics, probs = {}, None
    for name in names:
        metrics[name], p = evaluate(model, *splits.of(name), cfg, precision)
        for row, cls in zip(metrics[name]["per_class"], classes or ()):
            row["class"] = cls
        if name == "test":
            probs = p
        logger.info("%5s: loss %.4f  accuracy %.4f  weighted F1 %.4f", name, metrics[name]["loss"],
                    metrics[name]["accuracy"], metrics[name]["f1_weighted"])
    return metrics, probs


def run_epoch(net: nn.Module, raw: nn.Module, splits: Splits, cfg: TrainConfig, state: TrainState,
              precision: str, on_step: Callable[[int, torch.Tensor], None]) -> dict[str, Any]:
    """Train one epoch and validate; returns its metrics.jsonl record (rundir.epoch_record)."""
    t0 = time.perf_counter()
    tr = train_one_epoch(net, raw, splits.train_x, splits.train_y, cfg, state.opt, state.sched, state.gen,
                         precision, on_step, state.scaler, state.average)
    t_train = time.perf_counter() - t0
    val, _ = evaluate(state.kept(raw), splits.val_x, splits.val_y, cfg, precision, shard=True)
    seconds = time.perf_counter() - t0
    state.epoch += 1
    state.train_time_s += seconds
    return R.epoch_record(state.epoch, tr, val, state.opt.param_groups[0]["lr"], seconds,
                          len(splits.train_y) / t_train)


def _divergence_check(state: TrainState, run_dir: Path, bar, every: int) -> Callable[[int, torch.Tensor], None]:
    """The per-step callback: advance the progress bar; every `every` steps, stop on a NaN/inf loss."""
    def on_step(step: int, loss: torch.Tensor) -> None:
        bar.update(1)
        if step % every == 0:
            value = loss.item()
            if not math.isfinite(value):
                best = state.stopper.best_epoch
                kept = (f"the best weights (epoch {best}) are intact in {run_dir / R.BEST}" if best
                        else "no epoch had finished, so no weights were saved")
                raise TrainingDiverged(f"loss became {value} at epoch {state.epoch + 1}, step {step + 1}; "
                                       f"training stopped; {kept}. Try a lower lr or --set grad_clip=1")
            bar.set_postfix_str(f"epoch {state.epoch + 1} loss {value:.4f}", refresh=False)
    return on_step


def fit(model: nn.Module, splits: Splits, cfg: TrainConfig, run_dir: Path, precision: str,
        resume: bool = False, on_epoch: Callable[[int, dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train with early stopping, checkpoint every epoch, restore the best (or, with
    `restore_best` False, keep the last) weights; return a summary.

    Writes RUN_DIR/metrics.jsonl, best.safetensors, last.safetensors and last.state.pt (rundir),
    and the epochs' TensorBoard events in RUN_DIR/tb/ (engine.tensorboard; main rank only).
    With `cfg.ema` the weight average (engine/average.py) is what is validated, saved as best and kept.
    `on_epoch(epoch, record)` runs after each epoch's checkpoint (with the epoch's validated weights
    in `model`); returning True stops training there (benchmarks/time_to_accuracy.py uses it).
    On KeyboardInterrupt the last finished epoch is on disk and the exception propagates.
    """
    from tqdm import tqdm

    device, raw, main = splits.train_x.device, model, D.is_main()
    if hasattr(raw, "init_from_data"):   # data-dependent layers (models/resnet.py: Whiten); on resume,
        raw.init_from_data(to_input(splits.train_x[:5000]))   # restore() loads the checkpoint's over them
    net = cpu_view(raw) if device.type == "cpu" and not cfg.compile else raw
    net = torch.compile(net) if cfg.compile else net
    if D.world_size() > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    state = new_state(raw, cfg, len(splits.train_y), device, precision)
    if resume:
        restore(raw, state, run_dir)
    if main:
        R.keep_epochs(run_dir, state.epoch)
    events = EpochEvents(run_dir, first_epoch=state.epoch + 1)   # opened by its first write: on the main rank

    spe = steps_per_epoch(len(splits.train_y), cfg.batch_size, D.world_size())
    bar = tqdm(total=cfg.epochs * spe, initial=state.epoch * spe, unit="step", file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5, disable=not main, leave=False)
    on_step = _divergence_check(state, run_dir, bar, 1 if device.type == "cpu" else 25)
    stopped_early = state.stopper.should_stop  # a resumed run that had already stopped early trains no more
    cut_short = False                          # stopped by on_epoch before its epochs ran out
    try:
        while state.epoch < cfg.epochs and not stopped_early:
            record = run_epoch(net, raw, splits, cfg, state, precision, on_step)
            improved = state.stopper.step(record[cfg.monitor], state.epoch)
            if main:
                save_checkpoint(raw, state, run_dir, record, improved, events)
                bar.write(f"epoch {state.epoch:>3}/{cfg.epochs}  loss {record['train_loss']:.4f} "
                          f"acc {record['train_accuracy']:.4f}  val_loss {record['val_loss']:.4f} "
                          f"val_acc {record['val_accuracy']:.4f} val_f1 {record['val_f1']:.4f}  "
                          f"{record['epoch_time_s']:.1f}s {record['images_per_s']:.0f} img/s"
                          f"{'  *' if improved else ''}", file=sys.stderr)
            if on_epoch is not None:
                with holding(raw, state.average):   # the validated weights, for the callback
                    stop = D.broadcast_flag(bool(on_epoch(state.epoch, record)), device)
                if stop:
                    cut_short = state.epoch < cfg.epochs
                    break
            if D.broadcast_flag(state.stopper.should_stop, device):
                stopped_early = state.epoch < cfg.epochs
                logger.info("early stopping after epoch %d: no %s improvement for %d epochs; best epoch %s",
                            state.epoch, cfg.monitor, cfg.patience, state.stopper.best_epoch)
                break
    finally:
        bar.close()
        events.close()
    D.barrier()
    # `raw` holds the last epoch's weights (trained here, or restored from LAST on resume), which is
    # what a recipe with restore_best=False keeps (Keras' EarlyStopping default; not with `ema`).
    if cfg.restore_best:
        load_weights(raw, run_dir / R.BEST)
    return {"train_time_s": round(state.train_time_s, 2), "epochs_run": state.epoch,
            "best_epoch": state.stopper.best_epoch, "stopped_early": stopped_early, "monitor": cfg.monitor,
            "best_value": state.stopper.best, "cut_short": cut_short}
