"""Fused CPU kernels in C: compiled on first use with the system C compiler, loaded with ctypes.

PyTorch on CPU runs one memory pass per eager op, and for the study's CNN the chain
ReLU -> BatchNorm (batch statistics) -> MaxPool 2x2 on the 64x26x26 conv output cost more than
the convolutions themselves. Here it is 2 passes forward (statistics; normalise + pool + argmax)
and 1 pass backward (max-pool scatter + BatchNorm backward + ReLU mask in one expression), on
channels-last float32 or bfloat16 tensors.

The ViT's dropout-heavy layers get the same treatment: GELU + dropout and softmax + dropout in one
pass each way, with a counter-based random mask that backward regenerates instead of storing.

No torch headers: plain C (~1 s to compile), cached in `<cache>/kernels/` (FMBENCH_CACHE_DIR,
XDG_CACHE_HOME/fmbench or ~/.cache/fmbench) per source, flags and CPU. Where PyTorch runs on GNU
OpenMP (libgomp, the Linux wheels), the kernels are built with -fopenmp and so use PyTorch's own
thread pool and `torch.set_num_threads`; otherwise they run on one thread. Where no compiler is
found, or with FMBENCH_KERNELS=0, `library()` returns None and callers use plain PyTorch ops.
Results are deterministic for a given thread count (fixed partition, partial sums added in order).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import torch

_TEMPLATE = r"""
/* Each kernel is a serial `*_part` over [lo, hi) with restrict-qualified arguments (so that it
   vectorises) and an exported driver that splits [0, n) over the OpenMP threads. */

/* Per-channel sums of r = max(x, 0) and r*r over rows [lo, hi) of C channels (channels-last). */
static NOINLINE void rbp_stats_part_SUF(const T* restrict x, int64_t lo, int64_t hi, int C, double* restrict out) {
    float s[1024], q[1024];
    for (int64_t r0 = lo; r0 < hi; r0 += 64) {
        int64_t r1 = r0 + 64 < hi ? r0 + 64 : hi;
        for (int c = 0; c < C; c++) { s[c] = 0.f; q[c] = 0.f; }
        for (int64_t r = r0; r < r1; r++) {
            const T* restrict p = x + r * C;
            for (int c = 0; c < C; c++) { float v = LOAD(p[c]); v = v > 0.f ? v : 0.f; s[c] += v; q[c] += v * v; }
        }
        for (int c = 0; c < C; c++) { out[c] += s[c]; out[C + c] += q[c]; }
    }
}
/* out[0:C] = sum, out[C:2C] = sum of squares; per-thread partial sums added in a fixed order. */
void rbp_stats_SUF(const T* x, int64_t rows, int C, double* out) {
    int nt = NT();
    double* part = calloc((size_t)nt * 2 * C, sizeof(double));
    if (!part) return;
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        rbp_stats_part_SUF(x, rows * t / k, rows * (t + 1) / k, C, part + (size_t)t * 2 * C);
    }
    for (int t = 0; t < nt; t++) for (int c = 0; c < 2 * C; c++) out[c] += part[(size_t)t * 2 * C + c];
    free(part);
}

/* y = max over each 2x2 window of a*r + b; idx = window position of the max (the first wins, as
   nn.MaxPool2d); rwin = r there (for the backward sums). Windows past an odd edge are dropped. */
static NOINLINE void rbp_pool_part_SUF(const T* restrict x, int64_t lo, int64_t hi, int H, int W, int C,
                                       const float* restrict a, const float* restrict b, T* restrict y,
                                       uint8_t* restrict idx, T* restrict rwin) {
    int Ho = H / 2, Wo = W / 2;
    for (int64_t n = lo; n < hi; n++) for (int i = 0; i < Ho; i++) for (int j = 0; j < Wo; j++) {
        const T* restrict p0 = x + ((n * H + 2 * i) * W + 2 * j) * C;
        const T* restrict p1 = p0 + C;
        const T* restrict p2 = p0 + (int64_t)W * C;
        const T* restrict p3 = p2 + C;
        int64_t o = ((n * Ho + i) * Wo + j) * C;
        for (int c = 0; c < C; c++) {
            float r0 = LOAD(p0[c]), r1 = LOAD(p1[c]), r2 = LOAD(p2[c]), r3 = LOAD(p3[c]);
            r0 = r0 > 0.f ? r0 : 0.f; r1 = r1 > 0.f ? r1 : 0.f; r2 = r2 > 0.f ? r2 : 0.f; r3 = r3 > 0.f ? r3 : 0.f;
            float v0 = a[c] * r0 + b[c], v1 = a[c] * r1 + b[c], v2 = a[c] * r2 + b[c], v3 = a[c] * r3 + b[c];
            uint8_t g1 = v1 > v0, g3 = v3 > v2;
            float m01 = g1 ? v1 : v0, m23 = g3 ? v3 : v2, w01 = g1 ? r1 : r0, w23 = g3 ? r3 : r2;
            uint8_t hi2 = m23 > m01;
            y[o + c] = STORE(hi2 ? m23 : m01);
            rwin[o + c] = STORE(hi2 ? w23 : w01);
            idx[o + c] = g1 + hi2 * (2 + g3 - g1);
        }
    }
}
void rbp_pool_SUF(const T* x, int64_t B, int H, int W, int C, const float* a, const float* b, T* y, uint8_t* idx, T* rwin) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        rbp_pool_part_SUF(x, B * t / k, B * (t + 1) / k, H, W, C, a, b, y, idx, rwin);
    }
}

/* out[0:C] += sum(gy), out[C:2C] += sum(gy * xhat at the argmax), over pooled rows [lo, hi). */
static NOINLINE void rbp_gsum_part_SUF(const T* restrict gy, const T* restrict rwin, int64_t lo, int64_t hi, int C,
                                       const float* restrict mean, const float* restrict invstd, double* restrict out) {
    float s[1024], q[1024];
    for (int64_t r0 = lo; r0 < hi; r0 += 64) {
        int64_t r1 = r0 + 64 < hi ? r0 + 64 : hi;
        for (int c = 0; c < C; c++) { s[c] = 0.f; q[c] = 0.f; }
        for (int64_t r = r0; r < r1; r++) {
            const T* restrict g = gy + r * C;
            const T* restrict w = rwin + r * C;
            for (int c = 0; c < C; c++) { float gv = LOAD(g[c]); s[c] += gv; q[c] += gv * (LOAD(w[c]) - mean[c]) * invstd[c]; }
        }
        for (int c = 0; c < C; c++) { out[c] += s[c]; out[C + c] += q[c]; }
    }
}
void rbp_gsum_SUF(const T* gy, const T* rwin, int64_t rows, int C, const float* mean, const float* invstd, double* out) {
    int nt = NT();
    double* part = calloc((size_t)nt * 2 * C, sizeof(double));
    if (!part) return;
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        rbp_gsum_part_SUF(gy, rwin, rows * t / k, rows * (t + 1) / k, C, mean, invstd, part + (size_t)t * 2 * C);
    }
    for (int t = 0; t < nt; t++) for (int c = 0; c < 2 * C; c++) out[c] += part[(size_t)t * 2 * C + c];
    free(part);
}

/* dx = [x > 0] * a * (g - k1 - xhat * k2), g = gy routed to the argmax of its window (0 elsewhere). */
static NOINLINE void rbp_bwd_part_SUF(const T* restrict x, const T* restrict gy, const uint8_t* restrict idx,
                                      int64_t lo, int64_t hi, int H, int W, int C, const float* restrict a,
                                      const float* restrict mean, const float* restrict invstd,
                                      const float* restrict k1, const float* restrict k2, T* restrict dx) {
    int Ho = H / 2, Wo = W / 2;
    for (int64_t n = lo; n < hi; n++) for (int h = 0; h < H; h++) for (int w = 0; w < W; w++) {
        int i = h >> 1, j = w >> 1;
        uint8_t here = (uint8_t)((h & 1) * 2 + (w & 1));
        const T* restrict p = x + ((n * H + h) * W + w) * C;
        T* restrict o = dx + ((n * H + h) * W + w) * C;
        if (i < Ho && j < Wo) {
            const T* restrict g = gy + ((n * Ho + i) * Wo + j) * C;
            const uint8_t* restrict ix = idx + ((n * Ho + i) * Wo + j) * C;
            for (int c = 0; c < C; c++) {
                float v = LOAD(p[c]);
                float gb = ix[c] == here ? LOAD(g[c]) : 0.f;
                float d = a[c] * (gb - k1[c] - (v - mean[c]) * invstd[c] * k2[c]);
                o[c] = STORE(v > 0.f ? d : 0.f);
            }
        } else {
            for (int c = 0; c < C; c++) {
                float v = LOAD(p[c]);
                float d = a[c] * (-k1[c] - (v - mean[c]) * invstd[c] * k2[c]);
                o[c] = STORE(v > 0.f ? d : 0.f);
            }
        }
    }
}
void rbp_bwd_SUF(const T* x, const T* gy, const uint8_t* idx, int64_t B, int H, int W, int C, const float* a,
                 const float* mean, const float* invstd, const float* k1, const float* k2, T* dx) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        rbp_bwd_part_SUF(x, gy, idx, B * t / k, B * (t + 1) / k, H, W, C, a, mean, invstd, k1, k2, dx);
    }
}

/* a = gelu(h) * kept (the survivors' scale is applied by the caller). */
static NOINLINE void gelu_drop_fwd_part_SUF(const T* restrict h, T* restrict a, int64_t lo, int64_t hi,
                                            uint32_t seed, uint32_t keep) {
    for (int64_t i = lo; i < hi; i++) {
        float v = LOAD(h[i]);
        float g = 0.5f * v * (1.f + erf_f(v * 0.70710678118654752f));
        a[i] = STORE(kept(seed, i, keep) ? g : 0.f);
    }
}
void gelu_drop_fwd_SUF(const T* h, T* a, int64_t n, uint32_t seed, uint32_t keep) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        gelu_drop_fwd_part_SUF(h, a, n * t / k, n * (t + 1) / k, seed, keep);
    }
}

/* gh = ga * kept * gelu'(h) */
static NOINLINE void gelu_drop_bwd_part_SUF(const T* restrict ga, const T* restrict h, T* restrict gh, int64_t lo,
                                            int64_t hi, uint32_t seed, uint32_t keep) {
    for (int64_t i = lo; i < hi; i++) {
        float v = LOAD(h[i]);
        float e = exp_f(-0.5f * v * v);                                 /* shared by erf and the density */
        float d = 0.5f * (1.f + erf_e(v * 0.70710678118654752f, e)) + v * 0.39894228040143268f * e;
        gh[i] = STORE(kept(seed, i, keep) ? LOAD(ga[i]) * d : 0.f);
    }
}
void gelu_drop_bwd_SUF(const T* ga, const T* h, T* gh, int64_t n, uint32_t seed, uint32_t keep) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        gelu_drop_bwd_part_SUF(ga, h, gh, n * t / k, n * (t + 1) / k, seed, keep);
    }
}

/* Rows [lo, hi) of length n: p = softmax(s), pd = p * kept * scale. */
static NOINLINE void softmax_drop_fwd_part_SUF(const T* restrict s, T* restrict p, T* restrict pd, int64_t lo,
                                               int64_t hi, int n, uint32_t seed, uint32_t keep, float scale) {
    for (int64_t r = lo; r < hi; r++) {
        const T* restrict x = s + r * n;
        T* restrict y = p + r * n;
        T* restrict z = pd + r * n;
        float m = LOAD(x[0]);
        for (int j = 1; j < n; j++) { float v = LOAD(x[j]); m = v > m ? v : m; }
        float sum = 0.f;
        for (int j = 0; j < n; j++) { float e = exp_f(LOAD(x[j]) - m); y[j] = STORE(e); sum += e; }
        float inv = 1.f / sum;
        for (int j = 0; j < n; j++) {
            float v = LOAD(y[j]) * inv;
            y[j] = STORE(v);
            z[j] = STORE(kept(seed, r * n + j, keep) ? v * scale : 0.f);
        }
    }
}
void softmax_drop_fwd_SUF(const T* s, T* p, T* pd, int64_t rows, int n, uint32_t seed, uint32_t keep, float scale) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        softmax_drop_fwd_part_SUF(s, p, pd, rows * t / k, rows * (t + 1) / k, n, seed, keep, scale);
    }
}

/* gs = p * (g - sum(g * p)), g = gpd * kept * scale */
static NOINLINE void softmax_drop_bwd_part_SUF(const T* restrict gpd, const T* restrict p, T* restrict gs, int64_t lo,
                                               int64_t hi, int n, uint32_t seed, uint32_t keep, float scale) {
    for (int64_t r = lo; r < hi; r++) {
        const T* restrict g = gpd + r * n;
        const T* restrict y = p + r * n;
        T* restrict o = gs + r * n;
        float dot = 0.f;
        for (int j = 0; j < n; j++) {
            float gj = kept(seed, r * n + j, keep) ? LOAD(g[j]) * scale : 0.f;
            o[j] = STORE(gj);
            dot += gj * LOAD(y[j]);
        }
        for (int j = 0; j < n; j++) o[j] = STORE(LOAD(y[j]) * (LOAD(o[j]) - dot));
    }
}
void softmax_drop_bwd_SUF(const T* gpd, const T* p, T* gs, int64_t rows, int n, uint32_t seed, uint32_t keep, float scale) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        softmax_drop_bwd_part_SUF(gpd, p, gs, rows * t / k, rows * (t + 1) / k, n, seed, keep, scale);
    }
}
"""

_PRELUDE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#define NT() omp_get_max_threads()
#define TID() omp_get_thread_num()
#define TN() omp_get_num_threads()
#else
#define NT() 1
#define TID() 0
#define TN() 1
#endif
#define NOINLINE __attribute__((noinline))
static inline float bf2f(uint16_t v) { uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t f2bf(float f) {  /* round to nearest even, as PyTorch; NaN stays NaN */
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}
static inline float f32_load(float v) { return v; }
static inline float f32_store(float v) { return v; }

/* exp (Cephes polynomial, ~1e-7 relative) and erf (Abramowitz-Stegun 7.1.26, as PyTorch's
   vectorised erf, |error| < 1.5e-7): written out so that they vectorise without libmvec. */
static inline float exp_f(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float fx = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x
               + 1.6666665459e-1f) * x + 5.0000001201e-1f;
    y = y * x * x + x + 1.f;
    uint32_t u = (uint32_t)((int32_t)fx + 127) << 23;
    float scale; memcpy(&scale, &u, 4);
    return y * scale;
}
/* erf(x) = 1 - r(t) exp(-x^2), t = 1 / (1 + p|x|); `e` = exp(-x^2) when the caller has it. */
static inline float erf_e(float x, float e) {
    float ax = x < 0.f ? -x : x;
    float t = 1.f / (1.f + 0.3275911f * ax);
    float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    float v = 1.f - r * e;
    return x < 0.f ? -v : v;
}
static inline float erf_f(float x) { return erf_e(x, exp_f(-x * x)); }
/* Dropout's random numbers: element i of a call is kept when the top 16 bits of Wellons'
   "lowbias32" integer hash of (i + seed) are below `keep` (keep / 65536 = 1 - p). Counter-based:
   any thread makes any element's bit, and backward regenerates the mask instead of storing it. */
static inline int kept(uint32_t seed, int64_t i, uint32_t keep) {
    uint32_t x = (uint32_t)i * 0x9e3779b9u + seed;
    x ^= x >> 16; x *= 0x21f0aaadu; x ^= x >> 15; x *= 0xd35a2d97u; x ^= x >> 15;
    return (x >> 16) < keep;
}
"""

# (suffix, C type, load, store) per tensor dtype
_TYPES = {torch.bfloat16: ("bf16", "uint16_t", "bf2f", "f2bf"), torch.float32: ("f32", "float", "f32_load", "f32_store")}
_FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
          "-shared", "-fPIC", "-std=c99"]
_GCC_FLAGS = ["--param=vect-partial-vector-usage=2"]   # masked AVX-512 tails (the ViT's rows are 50 long)
_SIGNATURES = {  # argtypes: p = pointer, l = int64, i = int, u = uint32, f = float
    "rbp_stats": "plip", "rbp_pool": "pliiippppp", "rbp_gsum": "pplippp", "rbp_bwd": "pppliiipppppp",
    "gelu_drop_fwd": "ppluu", "gelu_drop_bwd": "pppluu", "softmax_drop_fwd": "pppliuuf", "softmax_drop_bwd": "pppliuuf",
}
_CT = {"p": ctypes.c_void_p, "l": ctypes.c_int64, "i": ctypes.c_int, "u": ctypes.c_uint32, "f": ctypes.c_float}
_lib: ctypes.CDLL | None | bool = False


def _source() -> str:
    parts = [_PRELUDE]
    for suf, ctype, load, store in _TYPES.values():
        parts.append(re.sub(r"\bT\*", f"{ctype}*", _TEMPLATE.replace("_SUF(", f"_{suf}("))
                     .replace("LOAD(", f"{load}(").replace("STORE(", f"{store}("))
    return "\n".join(parts)


def _cache_dir() -> Path:
    from fmbench.data.sources import cache_root

    return cache_root().parent / "kernels"


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


def _compile(src: str, out: Path, flags: list[str], cc: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c_file, so_file = Path(tmp) / "kernels.c", Path(tmp) / "kernels.so"
        c_file.write_text(src)
        subprocess.run([cc, *flags, "-o", str(so_file), str(c_file)], check=True, capture_output=True, timeout=120)
        os.replace(so_file, out)   # atomic: concurrent processes never load a half-written file


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (then callers use PyTorch ops)."""
    global _lib
    if _lib is False:
        _lib = None
        if os.environ.get("FMBENCH_KERNELS", "1") != "0" and os.name == "posix":
            from fmbench.runtime import cpu_name

            try:
                cc, extra = _compiler()
                src, flags = _source(), _FLAGS + extra + _openmp_flags()
                key = hashlib.sha256("\0".join([src, cc, *flags, cpu_name()]).encode()).hexdigest()[:16]
                path = _cache_dir() / f"fmbench-kernels-{key}.so"
                if not path.exists():
                    _compile(src, path, flags, cc)
                lib = ctypes.CDLL(str(path))
                for name, sig in _SIGNATURES.items():
                    for suf, *_ in _TYPES.values():
                        getattr(lib, f"{name}_{suf}").argtypes = [_CT[c] for c in sig]
                _lib = lib
            except (OSError, subprocess.SubprocessError, AttributeError):
                _lib = None
    return _lib


def fn(name: str, dtype: torch.dtype) -> Callable:
    """The C function `name` for tensors of `dtype` (library() must not be None)."""
    return getattr(library(), f"{name}_{_TYPES[dtype][0]}")


def supports(dtype: torch.dtype) -> bool:
    return dtype in _TYPES and library() is not None


def ptr(t: torch.Tensor, offset: int = 0) -> ctypes.c_void_p:
    """Address of element `offset` of a contiguous tensor."""
    return ctypes.c_void_p(t.data_ptr() + offset * t.element_size())
