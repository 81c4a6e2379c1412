// attention.cu — scaled-dot-product attention with the online softmax (FlashAttention-2, Dao
// 2023; seed 003 "FlashAttention"), forward and backward side by side; kiln-cpu's
// kernels/attention.rs is the reference. Never materialises the T×S score matrix.
//
// Shapes: q (B,H,T,D) contiguous; k, v (B,Hkv,S,D) with each (b, kv head) block a contiguous
// (S,D) run starting `hs` elements after the previous one (hs = S·D when contiguous); query head
// h reads kv head h / (H/Hkv). Optional additive mask viewed by `lm` as (B,H,T,S). Causal: query
// i sees keys j ≤ i + (S − T). Dropout p on the probabilities, counter ((b·H+h)·T+i)·S+j with
// kiln-cpu's generator: an element is kept when uniform ≥ thresh and then scaled by `mult`.
//
// Forward: a block holds WARPS query rows of one (b, h), one warp per row. Key chunks of 32 go
// through shared memory; lane j scores key j of the chunk, the warp updates the running max m and
// sum ℓ, and each lane accumulates the output dims lane, lane+32, … (D ≤ 128).
//   S = scale·q·kⱼ (+mask), m' = max(m, max S), P = e^(S−m'), ℓ = e^(m−m')ℓ + ΣP,
//   O = e^(m−m')O + P̃V;  finally O /= ℓ, lse = m + ln ℓ (rows that see no key: O = 0, lse = −∞).
// Backward with Dᵢ = rowsum(dO ⊙ O), P = e^(S − lse), dP = (dO·Vᵀ) ⊙ Z/(1−p), dS = P ⊙ (dP − D):
//   dQ = scale·dS·K (a warp per query row, as the forward), and dK = scale·dSᵀQ, dV = P̃ᵀdO
//   (a warp per key row, looping over the query heads of its group). No atomics: each output row
//   has one writer, so results are deterministic.

#define KC 32
#define DMAX 128
#define WARPS 4

struct AttnGeo {
    i64 b, h, hkv, t, s, d, hs;
    float scale;
    int causal;
    double thresh;  // dropout: keep when uniform ≥ thresh (0: no dropout)
    float mult;     // 1/(1−p)
    int has_mask;
    u64 seed;
    i64 window;     // sliding window w (0: none): query i sees keys j > i + (S − T) − w
};

__device__ __forceinline__ float mask_at(const float* mask, const Strided& lm, i64 b, i64 h, i64 i, i64 j) {
    return mask[lm.offset + b * lm.stride[0] + h * lm.stride[1] + i * lm.stride[2] + j * lm.stride[3]];
}

__device__ __forceinline__ float drop_z(const AttnGeo& g, i64 b, i64 h, i64 i, i64 j) {
    if (g.thresh <= 0.0) return 1.0f;
    const u64 counter = (u64)(((b * g.h + h) * g.t + i) * g.s + j);
    return uniform01(g.seed, counter) >= g.thresh ? g.mult : 0.0f;
}

// Scaled, masked score of query row `qr` (shared) against key row `kr` (shared); −∞ if hidden.
__device__ __forceinline__ float score(const AttnGeo& g, const float* qr, const float* kr, const float* mask,
                                       const Strided& lm, i64 b, i64 h, i64 i, i64 j) {
    if (j >= g.s || i >= g.t || (g.causal && j > i + (g.s - g.t))) return NEG_INF;
    if (g.window > 0 && j + g.window <= i + (g.s - g.t)) return NEG_INF;
    float dot = 0.0f;
    for (i64 d = 0; d < g.d; ++d) dot += qr[d] * kr[d];
    float s = dot * g.scale;
    if (g.has_mask) s += mask_at(mask, lm, b, h, i, j);
    return s;
}

// Loads rows r0..r0+KC of a (rows, D) block at `src` into `dst` (row stride `ld`), zero past `rows`.
__device__ __forceinline__ void load_chunk(float* dst, int ld, const float* src, i64 r0, i64 rows, i64 d) {
    for (i64 e = threadIdx.x; e < KC * d; e += blockDim.x) {
        const i64 r = e / d, c = e % d;
        dst[r * ld + c] = r0 + r < rows ? src[(r0 + r) * d + c] : 0.0f;
    }
}

// Keys the block's query rows i0..i0+WARPS can see.
__device__ __forceinline__ i64 keys_end(const AttnGeo& g, i64 i0) {
    if (!g.causal) return g.s;
    const i64 last = min(i0 + WARPS - 1, g.t - 1) + (g.s - g.t) + 1;
    return max((i64)0, min(g.s, last));
}

// grid (⌈T/WARPS⌉, B·H), block 32·WARPS. out (B,H,T,D), lse (B,H,T).
extern "C" __global__ void attn_fwd_f32(AttnGeo g, const float* q, const float* k, const float* v, const float* mask,
                                        Strided lm, float* out, float* lse) {
    __shared__ float ks[KC][DMAX + 1];
    __shared__ float vs[KC][DMAX];
    __shared__ float qs[WARPS][DMAX];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const i64 bh = blockIdx.y, b = bh / g.h, h = bh % g.h;
    const i64 kvo = (b * g.hkv + h / (g.h / g.hkv)) * g.hs;
    const i64 i0 = (i64)blockIdx.x * WARPS, i = i0 + w;
    const bool active = i < g.t;
    if (active)
        for (i64 d = lane; d < g.d; d += 32) qs[w][d] = q[(bh * g.t + i) * g.d + d];
    float m = NEG_INF, l = 0.0f, acc[DMAX / 32];
    for (int u = 0; u < DMAX / 32; ++u) acc[u] = 0.0f;
    const i64 s_end = keys_end(g, i0);
    for (i64 j0 = 0; j0 < s_end; j0 += KC) {
        __syncthreads();
        load_chunk(&ks[0][0], DMAX + 1, k + kvo, j0, g.s, g.d);
        load_chunk(&vs[0][0], DMAX, v + kvo, j0, g.s, g.d);
        __syncthreads();
        if (!active) continue;
        const i64 j = j0 + lane;
        const float s = score(g, qs[w], ks[lane], mask, lm, b, h, i, j);
        const float mn = fmaxf(m, warp_max(s));
        // a row with no visible key yet keeps m = −∞: shift by 0 (P = e^−∞ = 0), α = 1
        const float alpha = mn == NEG_INF ? 1.0f : expf(m - mn), shift = mn == NEG_INF ? 0.0f : mn;
        m = mn;
        float p = expf(s - shift);
        l = l * alpha + warp_sum(p);
        if (s != NEG_INF) p *= drop_z(g, b, h, i, j);
        for (int u = 0; u < DMAX / 32; ++u) acc[u] *= alpha;
        for (int jj = 0; jj < KC; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            for (int u = 0; u < DMAX / 32; ++u) {
                const i64 d = lane + 32 * u;
                if (d < g.d) acc[u] += pj * vs[jj][d];
            }
        }
    }
    if (!active) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int u = 0; u < DMAX / 32; ++u) {
        const i64 d = lane + 32 * u;
        if (d < g.d) out[(bh * g.t + i) * g.d + d] = acc[u] * inv;
    }
    if (lane == 0) lse[bh * g.t + i] = l > 0.0f ? m + logf(l) : NEG_INF;
}

// D = rowsum(dO ⊙ O), one warp per row: rows = B·H·T.
extern "C" __global__ void attn_bwd_dsum_f32(const float* out, const float* dout, float* dsum, i64 rows, i64 d) {
    const int lane = threadIdx.x & 31;
    for (i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += (i64)gridDim.x * (blockDim.x >> 5)) {
        float s = 0.0f;
        for (i64 c = lane; c < d; c += 32) s += out[r * d + c] * dout[r * d + c];
        s = warp_sum(s);
        if (lane == 0) dsum[r] = s;
    }
}

// dQ: grid (⌈T/WARPS⌉, B·H), a warp per query row.
extern "C" __global__ void attn_bwd_dq_f32(AttnGeo g, const float* q, const float* k, const float* v, const float* mask,
                                           Strided lm, const float* lse, const float* dsum, const float* dout,
                                           float* dq) {
    __shared__ float ks[KC][DMAX + 1];
    __shared__ float vs[KC][DMAX + 1];
    __shared__ float qs[WARPS][DMAX];
    __shared__ float dos[WARPS][DMAX];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const i64 bh = blockIdx.y, b = bh / g.h, h = bh % g.h;
    const i64 kvo = (b * g.hkv + h / (g.h / g.hkv)) * g.hs;
    const i64 i0 = (i64)blockIdx.x * WARPS, i = i0 + w;
    const bool active = i < g.t;
    float li = NEG_INF, di = 0.0f;
    if (active) {
        for (i64 d = lane; d < g.d; d += 32) {
            qs[w][d] = q[(bh * g.t + i) * g.d + d];
            dos[w][d] = dout[(bh * g.t + i) * g.d + d];
        }
        li = lse[bh * g.t + i];
        di = dsum[bh * g.t + i];
    }
    float acc[DMAX / 32];
    for (int u = 0; u < DMAX / 32; ++u) acc[u] = 0.0f;
    const i64 s_end = keys_end(g, i0);
    for (i64 j0 = 0; j0 < s_end; j0 += KC) {
        __syncthreads();
        load_chunk(&ks[0][0], DMAX + 1, k + kvo, j0, g.s, g.d);
        load_chunk(&vs[0][0], DMAX + 1, v + kvo, j0, g.s, g.d);
        __syncthreads();
        if (!active || li == NEG_INF) continue;
        const i64 j = j0 + lane;
        const float s = score(g, qs[w], ks[lane], mask, lm, b, h, i, j);
        float ds = 0.0f;
        if (s != NEG_INF) {
            const float p = expf(s - li);
            float dp = 0.0f;
            for (i64 d = 0; d < g.d; ++d) dp += dos[w][d] * vs[lane][d];
            ds = p * (dp * drop_z(g, b, h, i, j) - di);
        }
        for (int jj = 0; jj < KC; ++jj) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
            for (int u = 0; u < DMAX / 32; ++u) {
                const i64 d = lane + 32 * u;
                if (d < g.d) acc[u] += dsj * ks[jj][d];
            }
        }
    }
    if (!active) return;
    for (int u = 0; u < DMAX / 32; ++u) {
        const i64 d = lane + 32 * u;
        if (d < g.d) dq[(bh * g.t + i) * g.d + d] = acc[u] * g.scale;
    }
}

// dK, dV: grid (⌈S/WARPS⌉, B·Hkv), a warp per key row; dk, dv contiguous (B,Hkv,S,D).
extern "C" __global__ void attn_bwd_dkv_f32(AttnGeo g, const float* q, const float* k, const float* v,
                                            const float* mask, Strided lm, const float* lse, const float* dsum,
                                            const float* dout, float* dk, float* dv) {
    __shared__ float qs[KC][DMAX + 1];
    __shared__ float dos[KC][DMAX + 1];
    __shared__ float kr[WARPS][DMAX];
    __shared__ float vr[WARPS][DMAX];
    __shared__ float ls[KC], dsm[KC];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const i64 bkv = blockIdx.y, b = bkv / g.hkv, kvh = bkv % g.hkv, group = g.h / g.hkv;
    const i64 kvo = bkv * g.hs;
    const i64 j0 = (i64)blockIdx.x * WARPS, j = j0 + w;
    const bool active = j < g.s;
    if (active)
        for (i64 d = lane; d < g.d; d += 32) {
            kr[w][d] = k[kvo + j * g.d + d];
            vr[w][d] = v[kvo + j * g.d + d];
        }
    float ak[DMAX / 32], av[DMAX / 32];
    for (int u = 0; u < DMAX / 32; ++u) ak[u] = av[u] = 0.0f;
    // causal: query i sees key j when i ≥ j − (S − T); the block's first key bounds the start
    const i64 i_start = g.causal ? max((i64)0, j0 - (g.s - g.t)) : 0;
    for (i64 gi = 0; gi < group; ++gi) {
        const i64 h = kvh * group + gi, bh = b * g.h + h;
        for (i64 i0 = i_start - i_start % KC; i0 < g.t; i0 += KC) {
            __syncthreads();
            load_chunk(&qs[0][0], DMAX + 1, q + bh * g.t * g.d, i0, g.t, g.d);
            load_chunk(&dos[0][0], DMAX + 1, dout + bh * g.t * g.d, i0, g.t, g.d);
            if (threadIdx.x < KC) {
                const i64 i = i0 + threadIdx.x;
                ls[threadIdx.x] = i < g.t ? lse[bh * g.t + i] : NEG_INF;
                dsm[threadIdx.x] = i < g.t ? dsum[bh * g.t + i] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            const i64 i = i0 + lane;
            const float s = ls[lane] == NEG_INF ? NEG_INF : score(g, qs[lane], kr[w], mask, lm, b, h, i, j);
            float pd = 0.0f, ds = 0.0f;
            if (s != NEG_INF) {
                const float p = expf(s - ls[lane]);
                float dp = 0.0f;
                for (i64 d = 0; d < g.d; ++d) dp += dos[lane][d] * vr[w][d];
                const float z = drop_z(g, b, h, i, j);
                pd = p * z;
                ds = p * (dp * z - dsm[lane]);
            }
            for (int ii = 0; ii < KC; ++ii) {
                const float pi = __shfl_sync(0xffffffffu, pd, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
                for (int u = 0; u < DMAX / 32; ++u) {
                    const i64 d = lane + 32 * u;
                    if (d < g.d) {
                        av[u] += pi * dos[ii][d];
                        ak[u] += dsi * qs[ii][d];
                    }
                }
            }
        }
    }
    if (!active) return;
    for (int u = 0; u < DMAX / 32; ++u) {
        const i64 d = lane + 32 * u;
        if (d < g.d) {
            dk[(bkv * g.s + j) * g.d + d] = ak[u] * g.scale;
            dv[(bkv * g.s + j) * g.d + d] = av[u];
        }
    }
}
