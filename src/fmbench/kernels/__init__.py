"""Fused CPU kernels in C (fused.c, fused_body.h): compiled on first use with the system C compiler, loaded with ctypes.

PyTorch on CPU runs one memory pass per eager op, and for the study's CNN the chain
ReLU -> BatchNorm (batch statistics) -> MaxPool 2x2 on the 64x26x26 conv output cost more than
the convolutions themselves. The C version is 2 passes forward (statistics; normalise + pool +
argmax) and 1 pass backward (max-pool scatter + BatchNorm backward + ReLU mask in one expression),
on channels-last float32 or bfloat16 tensors.

The ViT's dropout-heavy layers get the same treatment: GELU + dropout and softmax + dropout in one
pass each way, with a counter-based random mask that backward regenerates instead of storing.
The autograd functions that call these kernels are in `kernels/ops.py`.

No torch headers: plain C (~1 s to compile), cached in `cache_dir()` per source, compiler, flags
and CPU. Where PyTorch runs on GNU OpenMP (libgomp, the Linux wheels), the kernels are built with
-fopenmp and so use PyTorch's own thread pool and `torch.set_num_threads`; otherwise they run on
one thread. Where no compiler is found, or with FMBENCH_KERNELS=0, `library()` returns None and
callers use plain PyTorch ops. Results are deterministic for a given thread count (fixed
partition, partial sums added in order).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import torch

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("fused.c", "fused_body.h")   # fused.c includes fused_body.h; both go into the cache key
# (suffix of the C function names, as fused.c's SUF) per tensor dtype
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
          "-shared", "-fPIC", "-std=c99"]
_GCC_FLAGS = ["--param=vect-partial-vector-usage=2"]   # masked AVX-512 tails (the ViT's rows are 50 long)
_SIGNATURES = {  # argtypes: p = pointer, l = int64, i = int, u = uint32, f = float
    "rbp_stats": "plip", "rbp_pool": "pliiippppp", "rbp_gsum": "pplippp", "rbp_bwd": "pppliiipppppp",
    "gelu_drop_fwd": "ppluu", "gelu_drop_bwd": "pppluu", "softmax_drop_fwd": "pppliuuf", "softmax_drop_bwd": "pppliuuf",
}
_CT = {"p": ctypes.c_void_p, "l": ctypes.c_int64, "i": ctypes.c_int, "u": ctypes.c_uint32, "f": ctypes.c_float}
_lib: ctypes.CDLL | None | bool = False   # False: not tried yet; None: unavailable
_max_channels = 0


def cache_dir() -> Path:
    """`<base>/kernels`, base = FMBENCH_CACHE_DIR, else XDG_CACHE_HOME/fmbench, else ~/.cache/fmbench."""
    from fmbench.fileio import cache_home

    return cache_home() / "kernels"


def _source() -> str:
    """The C sources as one text (for the cache key)."""
    return "\n".join((SOURCE_DIR / name).read_text(encoding="utf-8") for name in SOURCES)


def _openmp_flags() -> list[str]:
    """["-fopenmp"] when this process already runs GNU OpenMP (then the kernels share its threads)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return ["-fopenmp"] if "libgomp" in maps else []


def _compiler() -> tuple[str, list[str]]:
    """The C compiler to use and its extra flags."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise OSError("no C compiler found")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    return cc, _GCC_FLAGS if ("gcc" in version.lower() or "free software foundation" in version.lower()) else []


def _compile(out: Path, flags: list[str], cc: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        so_file = Path(tmp) / "kernels.so"
        # Compiled in place: fused.c finds fused_body.h beside it; only the .so is written, to the cache.
        subprocess.run([cc, *flags, "-o", str(so_file), str(SOURCE_DIR / "fused.c")], check=True,
                       capture_output=True, timeout=120)
        os.replace(so_file, out)   # atomic: concurrent processes never load a half-written file


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (then callers use PyTorch ops)."""
    global _lib, _max_channels
    if _lib is False:
        _lib = None
        if os.environ.get("FMBENCH_KERNELS", "1") != "0" and os.name == "posix":
            from fmbench.runtime import cpu_name

            try:
                cc, extra = _compiler()
                src, flags = _source(), _FLAGS + extra + _openmp_flags()
                key = hashlib.sha256("\0".join([src, cc, *flags, cpu_name()]).encode()).hexdigest()[:16]
                path = cache_dir() / f"fmbench-kernels-{key}.so"
                if not path.exists():
                    _compile(path, flags, cc)
                lib = ctypes.CDLL(str(path))
                for name, sig in _SIGNATURES.items():
                    for suf in _SUFFIX.values():
                        getattr(lib, f"{name}_{suf}").argtypes = [_CT[c] for c in sig]
                lib.fmbench_max_channels.restype = ctypes.c_int
                _max_channels = int(lib.fmbench_max_channels())
                _lib = lib
            except (OSError, subprocess.SubprocessError, AttributeError):
                _lib = None
    return _lib


def max_channels() -> int:
    """The widest channel dimension the ReLU/BatchNorm/pool kernels take (fused.c's MAX_CHANNELS); 0 without kernels."""
    return _max_channels if library() is not None else 0


def fn(name: str, dtype: torch.dtype) -> Callable:
    """The C function `name` for tensors of `dtype` (library() must not be None)."""
    return getattr(library(), f"{name}_{_SUFFIX[dtype]}")


def supports(dtype: torch.dtype) -> bool:
    """Whether the kernels are built and take tensors of `dtype`."""
    return dtype in _SUFFIX and library() is not None


def ptr(t: torch.Tensor, offset: int = 0) -> ctypes.c_void_p:
    """Address of element `offset` of a contiguous tensor."""
    return ctypes.c_void_p(t.data_ptr() + offset * t.element_size())
