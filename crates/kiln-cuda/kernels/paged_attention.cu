// paged_attention.cu — decoding attention over a paged KV cache (Kwon et al. 2023, vLLM; seed
// 003 "paged KV cache") and the cache append; kiln-cpu's kernels/paged_attention.rs is the
// reference. Query token n of q (N,H,D) belongs to sequence token_seq[n] and sees that
// sequence's keys lo..token_len[n] (lo = len − window with a sliding window, else 0); key j lives
// in slot block_tables[seq, j / bs]·bs + j % bs of the caches (slots, Hkv, D). One warp per
// (token, head): lane j scores key j0+j of each 32-key chunk, the online softmax runs across the
// warp, lanes accumulate output dims lane, lane+32, … (D ≤ 128).
//
// Cache dtypes: f32, f16, bf16, or int8 rows of D+4 bytes (f32 scale, then D codes).

#define PA_DMAX 128

__device__ __forceinline__ float kv_at(int dt, const void* cache, i64 row, i64 row_len, i64 d) {
    switch (dt) {
        case DT_F32: return ((const float*)cache)[row * row_len + d];
        case DT_F16: return f16_to_f32(((const u16*)cache)[row * row_len + d]);
        case DT_BF16: return bf16_to_f32(((const u16*)cache)[row * row_len + d]);
        default: {  // int8 row: row_len = D + 4 bytes
            const u8* r = (const u8*)cache + row * row_len;
            const u32 bits = (u32)r[0] | ((u32)r[1] << 8) | ((u32)r[2] << 16) | ((u32)r[3] << 24);
            return __uint_as_float(bits) * (float)(signed char)r[4 + d];
        }
    }
}

// block (32·4): four (token, head) pairs; grid ⌈N·H/4⌉.
extern "C" __global__ void paged_attn_f32(const float* q, int dt, const void* kc, const void* vc,
                                          const i64* block_tables, i64 max_blocks, const i64* token_seq,
                                          const i64* token_len, float* out, i64 n, i64 h, i64 hkv, i64 d,
                                          i64 bs, float scale, i64 window) {
    __shared__ float qs[4][PA_DMAX];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const i64 item = (i64)blockIdx.x * 4 + w;
    if (item >= n * h) return;
    const i64 tok = item / h, head = item % h, kvh = head / (h / hkv);
    const i64 row_len = dt == DT_U8 ? d + 4 : d;  // elements (bytes for int8) per (slot, head)
    for (i64 c = lane; c < d; c += 32) qs[w][c] = q[item * d + c];
    __syncwarp();
    const i64 seq = token_seq[tok], len = token_len[tok];
    const i64 lo = window > 0 && len > window ? len - window : 0;
    float m = NEG_INF, l = 0.0f, acc[PA_DMAX / 32];
    for (int u = 0; u < PA_DMAX / 32; ++u) acc[u] = 0.0f;
    for (i64 j0 = lo; j0 < len; j0 += 32) {
        const i64 j = j0 + lane;
        float s = NEG_INF;
        i64 row = 0;
        if (j < len) {
            const i64 slot = block_tables[seq * max_blocks + j / bs] * bs + j % bs;
            row = slot * hkv + kvh;
            float dot = 0.0f;
            for (i64 c = 0; c < d; ++c) dot += qs[w][c] * kv_at(dt, kc, row, row_len, c);
            s = dot * scale;
        }
        const float mn = fmaxf(m, warp_max(s));
        const float alpha = mn == NEG_INF ? 1.0f : expf(m - mn), shift = mn == NEG_INF ? 0.0f : mn;
        m = mn;
        const float p = expf(s - shift);
        l = l * alpha + warp_sum(p);
        for (int u = 0; u < PA_DMAX / 32; ++u) acc[u] *= alpha;
        for (int jj = 0; jj < 32; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const i64 rj = __shfl_sync(0xffffffffu, row, jj);
            if (pj == 0.0f) continue;  // uniform across the warp
            for (int u = 0; u < PA_DMAX / 32; ++u) {
                const i64 c = lane + 32 * u;
                if (c < d) acc[u] += pj * kv_at(dt, vc, rj, row_len, c);
            }
        }
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int u = 0; u < PA_DMAX / 32; ++u) {
        const i64 c = lane + 32 * u;
        if (c < d) out[item * d + c] = acc[u] * inv;
    }
}

// cache rows slots[r] (each `w` elements wide, w = Hkv·D) = src row r, converted to the cache
// dtype. One block per row.
extern "C" __global__ void paged_write_f32(int dt, void* cache, const i64* slots, const float* src, i64 n, i64 w) {
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
        const i64 s = slots[r];
        for (i64 c = threadIdx.x; c < w; c += blockDim.x) store_f64(dt, cache, s * w + c, (double)src[r * w + c]);
    }
}

// int8 cache: rows slots[r] of (Hkv, D+4) bytes from src (n, Hkv, D); one warp per (row, head):
// scale = max|x|/127, code = clamp(round(x/scale), −127, 127), halves away from zero as Rust.
extern "C" __global__ void paged_write_q8(u8* cache, const i64* slots, const float* src, i64 n, i64 hkv, i64 d) {
    const int lane = threadIdx.x & 31;
    for (i64 item = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); item < n * hkv;
         item += (i64)gridDim.x * (blockDim.x >> 5)) {
        const i64 r = item / hkv, hh = item % hkv;
        const float* x = src + (r * hkv + hh) * d;
        float amax = 0.0f;
        for (i64 c = lane; c < d; c += 32) amax = fmaxf(amax, fabsf(x[c]));
        amax = warp_max(amax);
        const float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        u8* row = cache + (slots[r] * hkv + hh) * (d + 4);
        if (lane == 0) {
            const u32 bits = __float_as_uint(scale);
            row[0] = bits & 0xff; row[1] = (bits >> 8) & 0xff; row[2] = (bits >> 16) & 0xff; row[3] = bits >> 24;
        }
        for (i64 c = lane; c < d; c += 32) {
            const float v = fminf(fmaxf(roundf(x[c] * inv), -127.0f), 127.0f);
            row[4 + c] = (u8)(signed char)v;
        }
    }
}
