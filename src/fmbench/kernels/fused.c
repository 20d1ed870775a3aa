/* Fused CPU kernels for fmbench, loaded with ctypes by fmbench/kernels/__init__.py.

   Plain C99, no torch headers. The type-generic kernels are in fused_body.h, included once per
   tensor type below: T is the element type in memory, LOAD/STORE convert it to and from float
   (all arithmetic is in float), and FN(name) appends the type's suffix (rbp_stats_f32, ...).
   Built with -fopenmp where PyTorch itself runs on GNU OpenMP (then NT/TID/TN are PyTorch's
   thread pool); otherwise every driver runs on one thread. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The widest channel dimension rbp_stats and rbp_gsum accept (their per-block partial sums live
   on the stack). Callers check it through fmbench_max_channels(); wider inputs must not get here. */
#define MAX_CHANNELS 1024

int fmbench_max_channels(void) { return MAX_CHANNELS; }

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
#define FN(name) FN_(name, SUF)
#define FN_(name, suf) FN__(name, suf)      /* two steps, so that SUF is expanded before pasting */
#define FN__(name, suf) name##_##suf

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

/* bfloat16 tensors: stored as the top 16 bits of a float32. */
#define T uint16_t
#define SUF bf16
#define LOAD bf2f
#define STORE f2bf
#include "fused_body.h"
#undef T
#undef SUF
#undef LOAD
#undef STORE

/* float32 tensors. */
#define T float
#define SUF f32
#define LOAD f32_load
#define STORE f32_store
#include "fused_body.h"
#undef T
#undef SUF
#undef LOAD
#undef STORE
