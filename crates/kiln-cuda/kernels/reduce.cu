// reduce.cu — sum / max / min / argmax / argmin over a set of dims. The host permutes the
// layout so the kept dims come first and the reduced dims last: element (o, r) of the view is
// output o's r-th input, o < n_out, r < n_red. One block per output row (grid-stride over rows).
// Max/min use fmaxf/fminf, which drop NaNs (the CPU kernel propagates them).

enum { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN };

// For arg reductions: is (v, i) better than (bv, bi)? Ties go to the first index.
__device__ __forceinline__ bool better(int op, float v, i64 i, float bv, i64 bi) {
    if (op == R_ARGMAX) return v > bv || (v == bv && i < bi);
    return v < bv || (v == bv && i < bi);
}

extern "C" __global__ void reduce_f32(int op, Strided lx, const float* x, void* out, i64 n_out, i64 n_red) {
    __shared__ float scratch[32];
    __shared__ float sv[32];
    __shared__ i64 si[32];
    for (i64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        const i64 base = o * n_red;
        if (op == R_SUM || op == R_MAX || op == R_MIN) {
            float acc = op == R_SUM ? 0.0f : (op == R_MAX ? NEG_INF : -NEG_INF);
            for (i64 r = threadIdx.x; r < n_red; r += blockDim.x) {
                float v = x[strided_at(lx, base + r)];
                acc = op == R_SUM ? acc + v : (op == R_MAX ? fmaxf(acc, v) : fminf(acc, v));
            }
            float res;
            if (op == R_SUM) res = block_sum(acc, scratch);
            else if (op == R_MAX) res = block_max(acc, scratch);
            else res = -block_max(-acc, scratch);
            if (threadIdx.x == 0) ((float*)out)[o] = res;
        } else {
            float bv = op == R_ARGMAX ? NEG_INF : -NEG_INF;
            i64 bi = n_red;  // "none yet": loses every tie
            for (i64 r = threadIdx.x; r < n_red; r += blockDim.x) {
                float v = x[strided_at(lx, base + r)];
                if (better(op, v, r, bv, bi)) { bv = v; bi = r; }
            }
            for (int s = 16; s > 0; s >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, bv, s);
                i64 oi = __shfl_xor_sync(0xffffffffu, bi, s);
                if (better(op, ov, oi, bv, bi)) { bv = ov; bi = oi; }
            }
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
            __syncthreads();
            if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
            __syncthreads();
            if (warp == 0) {
                bv = lane < nw ? sv[lane] : (op == R_ARGMAX ? NEG_INF : -NEG_INF);
                bi = lane < nw ? si[lane] : n_red;
                for (int s = 16; s > 0; s >>= 1) {
                    float ov = __shfl_xor_sync(0xffffffffu, bv, s);
                    i64 oi = __shfl_xor_sync(0xffffffffu, bi, s);
                    if (better(op, ov, oi, bv, bi)) { bv = ov; bi = oi; }
                }
                // a row of NaNs (or empty) reports index 0, as the CPU's first element
                if (lane == 0) ((i64*)out)[o] = bi == n_red ? 0 : bi;
            }
        }
        __syncthreads();
    }
}
