"""Device and precision choice, seeding, threads, and the environment a run records."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch

from fmbench import __version__
from fmbench.errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def choose_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} requested but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX): bf16 then pays on CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(name: str, device: torch.device) -> str:
    """Resolve 'auto' to 'bf16' where the device runs it fast, else 'fp32'."""
    if name != "auto":
        if name == "fp16" and device.type == "cpu":
            raise ConfigError("precision fp16 is not supported on CPU; use bf16 or fp32")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision ('fp32' gives a no-op context)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python and torch (all devices). Data order and augmentation use their own generators."""
    random.seed(seed)
    torch.manual_seed(seed)


_DEFAULT_THREADS: list[int] = [torch.get_num_threads()]  # PyTorch's own count, before anyone changes it


def set_threads(threads: int) -> None:
    """Use `threads` intra-op threads; 0 restores PyTorch's default (even after an earlier change)."""
    torch.set_num_threads(threads if threads > 0 else _DEFAULT_THREADS[0])


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_libc = None


def _mallopt(param: int, value: int) -> bool:
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.mallopt  # noqa: B018 - glibc only; musl and macOS have no mallopt
        except (OSError, AttributeError):
            _libc = False
    return bool(_libc) and _libc.mallopt(param, value) == 1


def keep_freed_memory(enable: bool = True) -> bool:
    """Let glibc serve large tensors from its heap and keep freed memory for reuse (Linux/glibc).

    By default glibc maps every block over 32 MB (a batch of 1024 CNN activations is ~90 MB)
    freshly from the kernel and unmaps it on free, so each training step page-faults its large
    tensors in again; on a 2-core VM that was ~3x the cost of the arithmetic on them. The price
    is that the process keeps its peak memory instead of returning it between steps.
    `enable=False` restores glibc's steady-state defaults. Returns False where unsupported.
    """
    if enable:
        return _mallopt(_M_MMAP_MAX, 0) and _mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)  # C int: 2 GB
    return (_mallopt(_M_MMAP_MAX, 65536) and _mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            and _mallopt(_M_TRIM_THRESHOLD, 64 << 20))


def git_commit() -> str:
    """The git commit of the fmbench source tree, with '+dirty' for local changes, or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    return device.type


def capture_env(device: torch.device, precision: str, world_size: int = 1, batch_size: int = 0) -> dict:
    """Everything needed to trust and repeat a run: versions, device, precision, commit, command."""
    import numpy

    return {
        "fmbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "device": device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "world_size": world_size,
        "global_batch_size": batch_size * world_size,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
