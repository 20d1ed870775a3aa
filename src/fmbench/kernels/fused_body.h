/* The type-generic kernels, included by fused.c once per tensor type with T, LOAD, STORE and SUF
   defined (see there). No include guard: it is meant to be included more than once.

   Each kernel is a serial `*_part` over [lo, hi) with restrict-qualified arguments (so that it
   vectorises) and an exported driver that splits [0, n) over the OpenMP threads. */

/* Per-channel sums of r = max(x, 0) and r*r over rows [lo, hi) of C channels (channels-last). */
static NOINLINE void FN(rbp_stats_part)(const T* restrict x, int64_t lo, int64_t hi, int C, double* restrict out) {
    float s[MAX_CHANNELS], q[MAX_CHANNELS];
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
void FN(rbp_stats)(const T* x, int64_t rows, int C, double* out) {
    int nt = NT();
    double* part = calloc((size_t)nt * 2 * C, sizeof(double));
    if (!part) return;
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(rbp_stats_part)(x, rows * t / k, rows * (t + 1) / k, C, part + (size_t)t * 2 * C);
    }
    for (int t = 0; t < nt; t++) for (int c = 0; c < 2 * C; c++) out[c] += part[(size_t)t * 2 * C + c];
    free(part);
}

/* y = max over each 2x2 window of a*r + b; idx = window position of the max (the first wins, as
   nn.MaxPool2d); rwin = r there (for the backward sums). Windows past an odd edge are dropped. */
static NOINLINE void FN(rbp_pool_part)(const T* restrict x, int64_t lo, int64_t hi, int H, int W, int C,
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
void FN(rbp_pool)(const T* x, int64_t B, int H, int W, int C, const float* a, const float* b, T* y, uint8_t* idx, T* rwin) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(rbp_pool_part)(x, B * t / k, B * (t + 1) / k, H, W, C, a, b, y, idx, rwin);
    }
}

/* out[0:C] += sum(gy), out[C:2C] += sum(gy * xhat at the argmax), over pooled rows [lo, hi). */
static NOINLINE void FN(rbp_gsum_part)(const T* restrict gy, const T* restrict rwin, int64_t lo, int64_t hi, int C,
                                       const float* restrict mean, const float* restrict invstd, double* restrict out) {
    float s[MAX_CHANNELS], q[MAX_CHANNELS];
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
void FN(rbp_gsum)(const T* gy, const T* rwin, int64_t rows, int C, const float* mean, const float* invstd, double* out) {
    int nt = NT();
    double* part = calloc((size_t)nt * 2 * C, sizeof(double));
    if (!part) return;
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(rbp_gsum_part)(gy, rwin, rows * t / k, rows * (t + 1) / k, C, mean, invstd, part + (size_t)t * 2 * C);
    }
    for (int t = 0; t < nt; t++) for (int c = 0; c < 2 * C; c++) out[c] += part[(size_t)t * 2 * C + c];
    free(part);
}

/* dx = [x > 0] * a * (g - k1 - xhat * k2), g = gy routed to the argmax of its window (0 elsewhere). */
static NOINLINE void FN(rbp_bwd_part)(const T* restrict x, const T* restrict gy, const uint8_t* restrict idx,
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
void FN(rbp_bwd)(const T* x, const T* gy, const uint8_t* idx, int64_t B, int H, int W, int C, const float* a,
                 const float* mean, const float* invstd, const float* k1, const float* k2, T* dx) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(rbp_bwd_part)(x, gy, idx, B * t / k, B * (t + 1) / k, H, W, C, a, mean, invstd, k1, k2, dx);
    }
}

/* a = gelu(h) * kept (the survivors' scale is applied by the caller). */
static NOINLINE void FN(gelu_drop_fwd_part)(const T* restrict h, T* restrict a, int64_t lo, int64_t hi,
                                            uint32_t seed, uint32_t keep) {
    for (int64_t i = lo; i < hi; i++) {
        float v = LOAD(h[i]);
        float g = 0.5f * v * (1.f + erf_f(v * 0.70710678118654752f));
        a[i] = STORE(kept(seed, i, keep) ? g : 0.f);
    }
}
void FN(gelu_drop_fwd)(const T* h, T* a, int64_t n, uint32_t seed, uint32_t keep) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(gelu_drop_fwd_part)(h, a, n * t / k, n * (t + 1) / k, seed, keep);
    }
}

/* gh = ga * kept * gelu'(h) */
static NOINLINE void FN(gelu_drop_bwd_part)(const T* restrict ga, const T* restrict h, T* restrict gh, int64_t lo,
                                            int64_t hi, uint32_t seed, uint32_t keep) {
    for (int64_t i = lo; i < hi; i++) {
        float v = LOAD(h[i]);
        float e = exp_f(-0.5f * v * v);                                 /* shared by erf and the density */
        float d = 0.5f * (1.f + erf_e(v * 0.70710678118654752f, e)) + v * 0.39894228040143268f * e;
        gh[i] = STORE(kept(seed, i, keep) ? LOAD(ga[i]) * d : 0.f);
    }
}
void FN(gelu_drop_bwd)(const T* ga, const T* h, T* gh, int64_t n, uint32_t seed, uint32_t keep) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(gelu_drop_bwd_part)(ga, h, gh, n * t / k, n * (t + 1) / k, seed, keep);
    }
}

/* Rows [lo, hi) of length n: p = softmax(s), pd = p * kept * scale. */
static NOINLINE void FN(softmax_drop_fwd_part)(const T* restrict s, T* restrict p, T* restrict pd, int64_t lo,
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
void FN(softmax_drop_fwd)(const T* s, T* p, T* pd, int64_t rows, int n, uint32_t seed, uint32_t keep, float scale) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(softmax_drop_fwd_part)(s, p, pd, rows * t / k, rows * (t + 1) / k, n, seed, keep, scale);
    }
}

/* gs = p * (g - sum(g * p)), g = gpd * kept * scale */
static NOINLINE void FN(softmax_drop_bwd_part)(const T* restrict gpd, const T* restrict p, T* restrict gs, int64_t lo,
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
void FN(softmax_drop_bwd)(const T* gpd, const T* p, T* gs, int64_t rows, int n, uint32_t seed, uint32_t keep, float scale) {
    #pragma omp parallel
    {
        int t = TID(), k = TN();
        FN(softmax_drop_bwd_part)(gpd, p, gs, rows * t / k, rows * (t + 1) / k, n, seed, keep, scale);
    }
}
