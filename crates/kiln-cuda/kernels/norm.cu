// norm.cu — LayerNorm and RMSNorm over the last dim, forward and backward side by side, one
// block per row (llm.c's layernorm_forward / layernorm_backward split, without atomics).
//
// LayerNorm: μ = mean x, σ² = mean (x−μ)², rstd = 1/√(σ²+ε), x̂ = (x−μ)·rstd, y = x̂·w + b.
//   Backward: ĝ = w·dy, dx = rstd·(ĝ − mean ĝ − x̂·mean(ĝ·x̂)); dw = Σ_rows dy·x̂, db = Σ_rows dy.
// RMSNorm: rstd = 1/√(mean x² + ε), y = x·rstd·w.
//   Backward: ĝ = w·dy, dx = rstd·(ĝ − x·rstd²·mean(ĝ·x)); dw = Σ_rows dy·x·rstd.
// The column sums dw/db run in a second kernel, one thread per column looping over the rows in
// order: deterministic, and coalesced across the threads of a warp.

extern "C" __global__ void layer_norm_fwd_f32(const float* x, const float* w, const float* b, float* y, float* mean,
                                              float* rstd, i64 n, i64 c, float eps) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + r * c;
        float s = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) s += xr[i];
        const float mu = block_sum(s, scratch) / (float)c;
        float v = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) { float d = xr[i] - mu; v += d * d; }
        const float rs = rsqrtf(block_sum(v, scratch) / (float)c + eps);
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) {
            float h = (xr[i] - mu) * rs;
            y[r * c + i] = (w ? h * w[i] : h) + (b ? b[i] : 0.0f);
        }
        if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = rs; }
    }
}

extern "C" __global__ void layer_norm_bwd_dx_f32(const float* x, const float* w, const float* mean, const float* rstd,
                                                 const float* dy, float* dx, i64 n, i64 c) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float *xr = x + r * c, *gr = dy + r * c;
        const float mu = mean[r], rs = rstd[r];
        float sg = 0.0f, sgx = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) {
            float g = w ? w[i] * gr[i] : gr[i];
            sg += g;
            sgx += g * (xr[i] - mu) * rs;
        }
        const float mg = block_sum(sg, scratch) / (float)c;
        const float mgx = block_sum(sgx, scratch) / (float)c;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) {
            float g = w ? w[i] * gr[i] : gr[i];
            dx[r * c + i] = rs * (g - mg - (xr[i] - mu) * rs * mgx);
        }
    }
}

// dw[i] = Σ_r dy·x̂, db[i] = Σ_r dy (db may be null). `mean` null: RMSNorm's x̂ = x·rstd.
extern "C" __global__ void norm_bwd_dw_f32(const float* x, const float* mean, const float* rstd, const float* dy,
                                           float* dw, float* db, i64 n, i64 c) {
    FOR_EACH(i, c) {
        float sw = 0.0f, sb = 0.0f;
        for (i64 r = 0; r < n; ++r) {
            float g = dy[r * c + i];
            float h = (x[r * c + i] - (mean ? mean[r] : 0.0f)) * rstd[r];
            sw += g * h;
            sb += g;
        }
        dw[i] = sw;
        if (db) db[i] = sb;
    }
}

extern "C" __global__ void rms_norm_fwd_f32(const float* x, const float* w, float* y, float* rstd, i64 n, i64 c,
                                            float eps) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + r * c;
        float s = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) s += xr[i] * xr[i];
        const float rs = rsqrtf(block_sum(s, scratch) / (float)c + eps);
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) y[r * c + i] = xr[i] * rs * (w ? w[i] : 1.0f);
        if (threadIdx.x == 0) rstd[r] = rs;
    }
}

extern "C" __global__ void rms_norm_bwd_dx_f32(const float* x, const float* w, const float* rstd, const float* dy,
                                               float* dx, i64 n, i64 c) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float *xr = x + r * c, *gr = dy + r * c;
        const float rs = rstd[r];
        float sgx = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) sgx += (w ? w[i] * gr[i] : gr[i]) * xr[i];
        const float m = block_sum(sgx, scratch) / (float)c;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) {
            float g = w ? w[i] * gr[i] : gr[i];
            dx[r * c + i] = rs * (g - xr[i] * rs * rs * m);
        }
    }
}
