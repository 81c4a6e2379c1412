// common.cuh — types and helpers shared by every kiln kernel. The loader prepends this file to
// each kernel source before NVRTC compiles it; nothing here includes a system header, so the
// kernels compile on a machine that has only the NVRTC library (no CUDA toolkit).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

// dtype codes: the order of kiln_core::DType (kiln_cuda::storage::dtype_code).
#define DT_F32 0
#define DT_F64 1
#define DT_F16 2
#define DT_BF16 3
#define DT_I32 4
#define DT_I64 5
#define DT_U8 6

#define KILN_MAX_DIMS 8

// A strided view (kiln_core::Layout): element i, counted row-major over `shape`, lives at
// offset + Σ_d idx_d · stride_d. Broadcast dims have stride 0.
struct Strided {
    i64 ndim;
    i64 offset;
    i64 shape[KILN_MAX_DIMS];
    i64 stride[KILN_MAX_DIMS];
};

__device__ __forceinline__ i64 strided_at(const Strided& s, i64 i) {
    i64 off = s.offset;
    for (int d = (int)s.ndim - 1; d >= 0; --d) {
        i64 n = s.shape[d];
        off += (i % n) * s.stride[d];
        i /= n;
    }
    return off;
}

// Grid-stride loop over n elements.
#define FOR_EACH(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// bfloat16: the top half of an f32; round to nearest even, NaN stays NaN (as the `half` crate).
__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}
// IEEE half through the PTX conversions (round to nearest even).
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Element i of a buffer of dtype `dt`, as f64 (exact for every kiln dtype but i64 beyond 2^53).
__device__ __forceinline__ double load_f64(int dt, const void* p, i64 i) {
    switch (dt) {
        case DT_F32: return (double)((const float*)p)[i];
        case DT_F64: return ((const double*)p)[i];
        case DT_F16: return (double)f16_to_f32(((const u16*)p)[i]);
        case DT_BF16: return (double)bf16_to_f32(((const u16*)p)[i]);
        case DT_I32: return (double)((const int*)p)[i];
        case DT_I64: return (double)((const i64*)p)[i];
        default: return (double)((const u8*)p)[i];
    }
}
// Stores v into element i of a buffer of dtype `dt`. Half types round through f32 (exact for an
// f32 source); integers truncate toward zero, as Rust's `as`.
__device__ __forceinline__ void store_f64(int dt, void* p, i64 i, double v) {
    switch (dt) {
        case DT_F32: ((float*)p)[i] = (float)v; break;
        case DT_F64: ((double*)p)[i] = v; break;
        case DT_F16: ((u16*)p)[i] = f32_to_f16((float)v); break;
        case DT_BF16: ((u16*)p)[i] = f32_to_bf16((float)v); break;
        case DT_I32: ((int*)p)[i] = (int)v; break;
        case DT_I64: ((i64*)p)[i] = (i64)v; break;
        default: ((u8*)p)[i] = (u8)v; break;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the call synchronises the block.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : -__int_as_float(0x7f800000);
    return warp_max(v);
}
#define NEG_INF (-__int_as_float(0x7f800000))

// splitmix64 of (seed, counter): kiln-cpu's counter-based generator, bit for bit.
__device__ __forceinline__ u64 mix64(u64 seed, u64 counter) {
    u64 z = seed * 0x9E3779B97F4A7C15ull ^ (counter + 0xD1B54A32D192ED03ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
__device__ __forceinline__ double uniform01(u64 seed, u64 counter) {
    return (double)(mix64(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}
