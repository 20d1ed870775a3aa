"""The training loop: `train_one_epoch`, `evaluate` and `fit`, over in-memory uint8 tensors.

Batches are index slices of a per-epoch permutation; augmentation runs on whole batches on
the model's device. Running train metrics include augmentation and dropout (as Keras reports
them); validation and the final evaluation are clean (eval mode, no augmentation).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.config import TrainConfig
from fmbench.data.batches import Splits, augment, to_input
from fmbench.engine import distributed as D
from fmbench.engine.checkpoint import load_state, load_weights, save_state, save_weights
from fmbench.engine.fuse import cpu_view
from fmbench.engine.metrics import confusion_update, report
from fmbench.engine.stopping import EarlyStopping
from fmbench.errors import TrainingDiverged
from fmbench.fileio import write_bytes
from fmbench.runtime import autocast, keep_freed_memory

NUM_CLASSES = 10


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (L2 in the gradient, as the study), AdamW (decoupled; no decay on biases and norms) or SGD."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, foreach=True)


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


def train_one_epoch(model: nn.Module, raw: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                    opt: torch.optim.Optimizer, sched, gen: torch.Generator, precision: str,
                    on_step: Callable[[int, torch.Tensor], None] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One pass over this rank's shard of a fresh permutation; returns running loss/accuracy/F1."""
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


def _rng_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_metrics(path: Path, epochs: int) -> None:
    """Keep the first `epochs` records (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()][:epochs]
    write_bytes(path, "".join(ln + "\n" for ln in lines).encode())


def fit(model: nn.Module, splits: Splits, cfg: TrainConfig, run_dir: Path, precision: str,
        resume: bool = False, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
        on_epoch: Callable[[int, dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train with early stopping, checkpoint every epoch, restore the best weights; return a summary.

    Writes RUN_DIR/metrics.jsonl, best.safetensors, last.safetensors and last.state.pt.
    `on_epoch(epoch, record)` runs after each epoch's checkpoint (with the epoch's weights in
    `model`); returning True stops training there (benchmarks/time_to_accuracy.py uses it).
    On KeyboardInterrupt the last finished epoch is on disk and the exception propagates.
    """
    from tqdm import tqdm

    device = splits.train_x.device
    raw = model
    base = cpu_view(raw) if device.type == "cpu" and not cfg.compile else raw
    net = torch.compile(base) if cfg.compile else base
    if D.world_size() > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(raw, cfg)
    spe = steps_per_epoch(len(splits.train_y), cfg.batch_size, D.world_size())
    sched = make_scheduler(opt, cfg, spe)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    stopper = EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    metrics_path = run_dir / "metrics.jsonl"
    start_epoch, train_time = 0, 0.0

    if resume and (run_dir / "last.state.pt").exists():
        state = load_state(run_dir / "last.state.pt")
        load_weights(raw, run_dir / "last.safetensors")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        stopper.load_state_dict(state["stopper"])
        _set_rng_state(state["rng"], gen)
        start_epoch, train_time = int(state["epoch"]), float(state["train_time_s"])
        log(f"resuming {run_dir} after epoch {start_epoch}")
    if D.is_main():
        _truncate_metrics(metrics_path, start_epoch)

    main = D.is_main()
    bar = tqdm(total=cfg.epochs * spe, initial=start_epoch * spe, unit="step", file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5, disable=not main, leave=False)
    check_every = 1 if device.type == "cpu" else 25
    epoch = start_epoch

    def on_step(step: int, loss: torch.Tensor) -> None:
        bar.update(1)
        if step % check_every == 0:
            value = loss.item()
            if not math.isfinite(value):
                kept = (f"the best weights (epoch {stopper.best_epoch}) are intact in {run_dir / 'best.safetensors'}"
                        if stopper.best_epoch else "no epoch had finished, so no weights were saved")
                raise TrainingDiverged(
                    f"loss became {value} at epoch {epoch + 1}, step {step + 1}; training stopped; {kept}. "
                    "Try a lower lr or --set grad_clip=1")
            bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs} loss {value:.4f}", refresh=False)

    stopped_early = stopper.should_stop  # a resumed run that had already stopped early trains no more
    epochs_run = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs if not stopped_early else start_epoch):
            epochs_run = epoch + 1
            t0 = time.perf_counter()
            tr = train_one_epoch(net, raw, splits.train_x, splits.train_y, cfg, opt, sched, gen, precision, on_step,
                                 scaler)
            t_train = time.perf_counter() - t0
            val, _ = evaluate(raw, splits.val_x, splits.val_y, cfg, precision, shard=True)
            seconds = time.perf_counter() - t0
            train_time += seconds
            record = {
                "epoch": epoch + 1,
                "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "train_f1": tr["f1"],
                "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_f1": val["f1_weighted"],
                "lr": opt.param_groups[0]["lr"], "epoch_time_s": round(seconds, 3),
                "images_per_s": round(len(splits.train_y) / t_train, 1),
            }
            monitored = {"val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_f1": val["f1_weighted"]}
            improved = stopper.step(monitored[cfg.monitor], epoch + 1)
            if main:
                if improved:
                    save_weights(raw, run_dir / "best.safetensors")
                save_weights(raw, run_dir / "last.safetensors")
                save_state(run_dir / "last.state.pt", {
                    "epoch": epoch + 1, "train_time_s": train_time, "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "stopper": stopper.state_dict(), "rng": _rng_state(gen),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                })
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.write(
                    f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {tr['loss']:.4f} acc {tr['accuracy']:.4f}  "
                    f"val_loss {val['loss']:.4f} val_acc {val['accuracy']:.4f} val_f1 {val['f1_weighted']:.4f}  "
                    f"{seconds:.1f}s {record['images_per_s']:.0f} img/s{'  *' if improved else ''}",
                    file=sys.stderr)
            if on_epoch is not None and on_epoch(epoch + 1, record):
                break
            if D.broadcast_flag(stopper.should_stop, device):
                stopped_early = epoch + 1 < cfg.epochs
                log(f"early stopping after epoch {epoch + 1}: no {cfg.monitor} improvement for "
                    f"{cfg.patience} epochs; best epoch {stopper.best_epoch}")
                break
    finally:
        bar.close()
    D.barrier()
    load_weights(raw, run_dir / "best.safetensors")
    return {"train_time_s": round(train_time, 2), "epochs_run": epochs_run, "best_epoch": stopper.best_epoch,
            "stopped_early": stopped_early, "monitor": cfg.monitor, "best_value": stopper.best}
