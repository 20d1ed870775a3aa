"""Throughput of fmbench's training engine against a plain-PyTorch tutorial loop, in one process.

Each model trains for `steps` optimizer steps with the reference loop (`fmbench.reference`) and
with the engine's real training path (`engine.loop.train_one_epoch` over a subset of
`steps * batch_size` images, with the preset's batch size, optimizer, augmentation, precision and
memory format), alternating the two sides round by round (and which goes first) so that load from
other processes hits both alike. Both sides warm up first. Reported: median images/s per side,
the median of the per-round ratios, inference images/s at batch 1024 and single-image latency
(`engine.speed.measure_inference`, through the engine's prediction path) and peak RSS.
Models without a reference loop are measured on the fmbench side only.
"""

from __future__ import annotations

import logging
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fmbench.engine.fuse import cpu_view
from fmbench.engine.loop import train_one_epoch
from fmbench.engine.optim import make_optimizer, make_scheduler
from fmbench.engine.speed import measure_inference
from fmbench.models import build_model, resolve_config
from fmbench.reference import REFERENCES, make_reference, train_steps
from fmbench.runtime import choose_precision, cpu_name, keep_freed_memory, seed_everything

logger = logging.getLogger(__name__)

MODELS = ("cnn_seed", "vit_seed")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 2 ** 20 if sys.platform == "darwin" else kb / 1024, 1)   # macOS reports bytes


def fmbench_side(name: str, data, steps: int, preset: str | None, overrides: dict | None = None):
    """The registered model and preset (with `--set` overrides) as `fmbench train` builds them;
    returns (run one pass -> images/s, model, cfg, precision)."""
    device = torch.device("cpu")
    model_cfg, cfg = resolve_config(name, preset, overrides)
    precision = choose_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model = build_model(name, model_cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = min(steps * cfg.batch_size, len(data.train_labels))
    x, y = data.train_images[:n], data.train_labels[:n]

    def run(images: int = n) -> float:
        t = time.perf_counter()
        train_one_epoch(model, model, x[:images], y[:images], cfg, opt, sched, gen, precision)
        return images / (time.perf_counter() - t)

    return run, model, cfg, precision


def bench_model(name: str, data, steps: int = 5, rounds: int = 3, preset: str = "seed") -> dict[str, Any]:
    """Training images/s of both sides (alternating rounds), inference speed and peak RSS, for one model."""
    device = torch.device("cpu")
    run_fm, model, cfg, precision = fmbench_side(name, data, steps, preset)
    ref = make_reference(name, data.train_images, data.train_labels, seed=cfg.seed) if name in REFERENCES else None
    batches = ref.batches() if ref else None

    def run_ref() -> float:
        keep_freed_memory(False)   # glibc's defaults, as in a tutorial's process
        t = time.perf_counter()
        seen = train_steps(ref, batches, steps)
        return seen / (time.perf_counter() - t)

    if ref:                        # warm-up: one step each (kernel selection, first allocations)
        keep_freed_memory(False)
        train_steps(ref, batches, 1)
    run_fm(cfg.batch_size)
    ref_ips, fm_ips = [], []
    for r in range(rounds):
        sides = [("fmbench", run_fm)] + ([("reference", run_ref)] if ref else [])
        for side, run in sides if r % 2 else sides[::-1]:
            (fm_ips if side == "fmbench" else ref_ips).append(run())
        logger.info(f"{name} round {r + 1}/{rounds}: fmbench {fm_ips[-1]:,.0f} img/s"
            + (f", reference {ref_ips[-1]:,.0f} img/s ({fm_ips[-1] / ref_ips[-1]:.2f}x)" if ref else ""))

    result: dict[str, Any] = {"preset": preset, "steps": steps, "rounds": rounds}
    fm_inf = measure_inference(cpu_view(model), device, precision, channels_last=cfg.channels_last)
    result["fmbench"] = {"train_images_per_s": round(statistics.median(fm_ips), 1), "rounds": [round(v, 1) for v in fm_ips],
                         "batch_size": cfg.batch_size, "precision": precision, **fm_inf}
    if ref:
        keep_freed_memory(False)
        ref_inf = measure_inference(ref.model, device, "fp32")
        keep_freed_memory(True)
        result["reference"] = {"train_images_per_s": round(statistics.median(ref_ips), 1),
                               "rounds": [round(v, 1) for v in ref_ips], "batch_size": ref.batch_size,
                               "precision": "fp32", **ref_inf}
        result["train_speedup"] = round(statistics.median(f / r for f, r in zip(fm_ips, ref_ips)), 2)
        result["infer_speedup"] = round(fm_inf["infer_images_per_s"] / ref_inf["infer_images_per_s"], 2)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run(data, models: tuple[str, ...] | list[str] = MODELS, steps: int = 5, rounds: int = 3) -> dict[str, Any]:
    """The whole benchmark: the machine and one `bench_model` record per model."""
    import os

    return {
        "machine": {"cpu": cpu_name(), "platform": platform.platform(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                    "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None},
        "models": {name: bench_model(name, data, steps, rounds) for name in models},
    }


def table(result: dict[str, Any]) -> str:
    """The result as a fixed-width text table."""
    m = result["machine"]
    head = (f"{'model':<10} {'side':<10} {'batch':>5} {'precision':>9} {'train img/s':>11} {'speedup':>7} "
            f"{'infer img/s':>11} {'latency ms':>10}")
    lines = [f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}, OMP_WAIT_POLICY={m['omp_wait_policy']}, "
             f"load average {m['load_average']}", head, "-" * len(head)]
    for name, r in result["models"].items():
        for side in ("reference", "fmbench"):
            if side not in r:
                continue
            s = r[side]
            speed = f"{r['train_speedup']:.2f}x" if side == "fmbench" and "train_speedup" in r else ""
            lines.append(f"{name:<10} {side:<10} {s['batch_size']:>5} {s['precision']:>9} "
                         f"{s['train_images_per_s']:>11,.0f} {speed:>7} {s['infer_images_per_s']:>11,.0f} "
                         f"{s['latency_ms']:>10.2f}")
    lines.append(f"peak RSS of this process: {max(r['peak_rss_mb'] for r in result['models'].values()):,.0f} MB")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    from fmbench.fileio import write_json as atomic_write_json

    atomic_write_json(Path(path), result)
