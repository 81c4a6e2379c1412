// softmax.cu — softmax / log-softmax over the last dim and softmax cross-entropy, forward and
// backward side by side, one block per row (llm.c's fused crossentropy_softmax_backward).
//
// softmax: y = e^(x−m)/Σe^(x−m); backward dx = y ⊙ (dy − Σ dy⊙y).
// log-softmax: y = x − lse; backward dx = dy − e^y·Σ dy.
// cross-entropy with target t and label smoothing ε, lse = m + ln Σ e^(x−m):
//   loss = (1−ε)(lse − x_t) + ε(lse − mean_v x_v), 0 for rows whose target is `ignore`;
//   backward dx_v = dloss·(e^(x_v − lse) − (1−ε)[v = t] − ε/V), 0 for ignored rows.

// Row max and log-sum-exp of xr (c elements), shared by every thread of the block.
__device__ __forceinline__ float row_lse(const float* xr, i64 c, float* scratch, float* out_max) {
    float m = NEG_INF;
    for (i64 i = threadIdx.x; i < c; i += blockDim.x) m = fmaxf(m, xr[i]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (i64 i = threadIdx.x; i < c; i += blockDim.x) s += expf(xr[i] - m);
    s = block_sum(s, scratch);
    *out_max = m;
    return m + logf(s);
}

extern "C" __global__ void softmax_fwd_f32(const float* x, float* y, i64 n, i64 c, int log) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + r * c;
        float m;
        const float lse = row_lse(xr, c, scratch, &m);
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) y[r * c + i] = log ? xr[i] - lse : expf(xr[i] - lse);
    }
}

extern "C" __global__ void softmax_bwd_f32(const float* y, const float* dy, float* dx, i64 n, i64 c, int log) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float *yr = y + r * c, *gr = dy + r * c;
        float s = 0.0f;
        for (i64 i = threadIdx.x; i < c; i += blockDim.x) s += log ? gr[i] : gr[i] * yr[i];
        s = block_sum(s, scratch);
        for (i64 i = threadIdx.x; i < c; i += blockDim.x)
            dx[r * c + i] = log ? gr[i] - expf(yr[i]) * s : yr[i] * (gr[i] - s);
    }
}

extern "C" __global__ void cross_entropy_fwd_f32(const float* x, const i64* targets, float* loss, float* lse_out,
                                                 i64 n, i64 v, i64 ignore, float eps) {
    __shared__ float scratch[32];
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + r * v;
        float m;
        const float lse = row_lse(xr, v, scratch, &m);
        float sx = 0.0f;
        if (eps != 0.0f) {
            for (i64 i = threadIdx.x; i < v; i += blockDim.x) sx += xr[i];
            sx = block_sum(sx, scratch);
        }
        if (threadIdx.x == 0) {
            const i64 t = targets[r];
            lse_out[r] = lse;
            loss[r] = t == ignore ? 0.0f : (1.0f - eps) * (lse - xr[t]) + eps * (lse - sx / (float)v);
        }
    }
}

extern "C" __global__ void cross_entropy_bwd_f32(const float* x, const i64* targets, const float* lse,
                                                 const float* dloss, float* dx, i64 n, i64 v, i64 ignore, float eps) {
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const i64 t = targets[r];
        const float g = t == ignore ? 0.0f : dloss[r], l = lse[r];
        for (i64 i = threadIdx.x; i < v; i += blockDim.x) {
            float p = expf(x[r * v + i] - l);
            dx[r * v + i] = g * (p - (i == t ? 1.0f - eps : 0.0f) - eps / (float)v);
        }
    }
}
