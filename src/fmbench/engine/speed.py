"""Inference speed of a model on its device: images/s at a large batch and single-image latency."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

from fmbench.engine.fuse import cpu_view
from fmbench.runtime import autocast


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_inference(model: nn.Module, device: torch.device, precision: str, batch_size: int = 1024,
                      repeats: int = 3, latency_repeats: int = 30, channels_last: bool = False) -> dict[str, float]:
    """{'infer_images_per_s', 'latency_ms'} on random inputs (median over repeats).

    On CPU the single-image latency is measured on one thread: one 28x28 image is too little work
    to split, and on a machine other processes are busy on, OpenMP workers that spin-wait for a
    core turned a ~1 ms forward pass into 80-500 ms (docs/performance.md). On CPU the model runs
    as the engine runs it (engine/fuse.py's view).
    """
    model.eval()
    if device.type == "cpu":
        model = cpu_view(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    one = x[:1].clone()
    threads = torch.get_num_threads()
    with autocast(device, precision):
        batch_s = _median_time(model, x, device, warmup=1, repeats=repeats)
        if device.type == "cpu":
            torch.set_num_threads(1)
        try:
            latency_s = _median_time(model, one, device, warmup=3, repeats=latency_repeats)
        finally:
            torch.set_num_threads(threads)
    return {"infer_images_per_s": round(batch_size / batch_s, 1), "latency_ms": round(1000 * latency_s, 3)}


def _median_time(model: nn.Module, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `model(x)` over `repeats` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        model(x)
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(dtype: torch.dtype = torch.bfloat16, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n CPU matmul on the current threads now (median of `repeats`): how fast the host
    is at the moment a benchmark runs, recorded beside its wall times.

    Shared machines change speed with their neighbours' load (docs/performance.md measured the same
    seed's 3 epochs at 39 s one evening and 24 s another day, to the same accuracy); this probe, at
    about 0.3 s, tells a reader which of two records ran on the slower host.
    """
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN picks and caches its kernel
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return round(2 * n ** 3 / statistics.median(times) / 1e9, 1)
