"""Speed measurements: a model's inference images/s at a large batch and single-image latency, the
host's matmul speed, and the median-of-timed-calls loop they and the benchmarks share."""

from __future__ import annotations

import statistics
import time
from typing import Callable

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
        batch_s = median_seconds(lambda: model(x), warmup=1, repeats=repeats, device=device)
        if device.type == "cpu":
            torch.set_num_threads(1)
        try:
            latency_s = median_seconds(lambda: model(one), warmup=3, repeats=latency_repeats, device=device)
        finally:
            torch.set_num_threads(threads)
    return {"infer_images_per_s": round(batch_size / batch_s, 1), "latency_ms": round(1000 * latency_s, 3)}


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int, device: torch.device | None = None) -> float:
    """Median wall seconds of `fn()` over `repeats` timed calls after `warmup` untimed ones; on CUDA
    (`device`) each timed call is synchronised so it counts the kernels it queued."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device is not None:
            _sync(device)
        t = time.perf_counter()
        fn()
        if device is not None:
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
    seconds = median_seconds(lambda: torch.mm(a, b), warmup=1, repeats=repeats)  # warm-up: oneDNN picks its kernel
    return round(2 * n ** 3 / seconds / 1e9, 1)
