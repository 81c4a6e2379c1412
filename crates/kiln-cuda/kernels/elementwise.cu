// elementwise.cu — unary maps and their derivatives, broadcasting binary ops, comparisons,
// select, fills, strided copies and dtype casts. Formulas equal kiln-cpu's
// (crates/kiln-cpu/src/kernels/elementwise.rs); op codes are the order of the Rust enums
// (kiln_core::backend::{UnaryOp, BinaryOp, CmpOp}).

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_C 0.044715f
#define FRAC_1_SQRT_2 0.7071067811865476f
#define FRAC_1_SQRT_2PI 0.3989422804014327f

enum { U_NEG, U_EXP, U_LOG, U_SQRT, U_TANH, U_ABS, U_SQR, U_RECIP, U_RELU, U_GELU_ERF, U_GELU_TANH,
       U_SILU, U_SIGMOID, U_POWF, U_AFFINE };

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float tanh_fast(float u) { return 1.0f - 2.0f / (expf(u + u) + 1.0f); }

__device__ float unary_f(int op, float x, float p0, float p1) {
    switch (op) {
        case U_NEG: return -x;
        case U_EXP: return expf(x);
        case U_LOG: return logf(x);
        case U_SQRT: return sqrtf(x);
        case U_TANH: return tanhf(x);
        case U_ABS: return fabsf(x);
        case U_SQR: return x * x;
        case U_RECIP: return 1.0f / x;
        case U_RELU: return fmaxf(x, 0.0f);
        case U_GELU_ERF: return 0.5f * x * (1.0f + erff(x * FRAC_1_SQRT_2));
        case U_GELU_TANH: return 0.5f * x * (1.0f + tanh_fast(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
        case U_SILU: return x * sigmoidf(x);
        case U_SIGMOID: return sigmoidf(x);
        case U_POWF: return powf(x, p0);
        default: return x * p0 + p1;  // U_AFFINE
    }
}

// dx = g · f'(x)
__device__ float unary_df(int op, float x, float g, float p0) {
    switch (op) {
        case U_NEG: return -g;
        case U_EXP: return g * expf(x);
        case U_LOG: return g / x;
        case U_SQRT: return g / (2.0f * sqrtf(x));
        case U_TANH: { float t = tanhf(x); return g * (1.0f - t * t); }
        case U_ABS: return x > 0.0f ? g : (x < 0.0f ? -g : 0.0f);
        case U_SQR: return 2.0f * x * g;
        case U_RECIP: return -g / (x * x);
        case U_RELU: return x > 0.0f ? g : 0.0f;
        case U_GELU_ERF: {
            float cdf = 0.5f * (1.0f + erff(x * FRAC_1_SQRT_2));
            float pdf = FRAC_1_SQRT_2PI * expf(-0.5f * x * x);
            return g * (cdf + x * pdf);
        }
        case U_GELU_TANH: {
            float t = tanh_fast(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
            return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
        }
        case U_SILU: { float s = sigmoidf(x); return g * s * (1.0f + x * (1.0f - s)); }
        case U_SIGMOID: { float s = sigmoidf(x); return g * s * (1.0f - s); }
        case U_POWF: return g * p0 * powf(x, p0 - 1.0f);
        default: return g * p0;  // U_AFFINE
    }
}

// y (n) = f(x viewed by lx)
extern "C" __global__ void unary_f32(int op, float p0, float p1, Strided lx, const float* x, float* y, i64 n) {
    FOR_EACH(i, n) { y[i] = unary_f(op, x[strided_at(lx, i)], p0, p1); }
}

// dx (n) = dy · f'(x)
extern "C" __global__ void unary_bwd_f32(int op, float p0, Strided lx, const float* x, Strided ldy, const float* dy,
                                         float* dx, i64 n) {
    FOR_EACH(i, n) { dx[i] = unary_df(op, x[strided_at(lx, i)], dy[strided_at(ldy, i)], p0); }
}

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN };

// z (n) = a ∘ b, both views already broadcast to the output shape.
extern "C" __global__ void binary_f32(int op, Strided la, const float* a, Strided lb, const float* b, float* z, i64 n) {
    FOR_EACH(i, n) {
        float x = a[strided_at(la, i)], y = b[strided_at(lb, i)];
        float r;
        switch (op) {
            case B_ADD: r = x + y; break;
            case B_SUB: r = x - y; break;
            case B_MUL: r = x * y; break;
            case B_DIV: r = x / y; break;
            case B_MAX: r = fmaxf(x, y); break;
            default: r = fminf(x, y); break;
        }
        z[i] = r;
    }
}

enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

// m (n, u8) = a <op> b for any dtype `dt` (compared as f64).
extern "C" __global__ void cmp_any(int op, int dt, Strided la, const void* a, Strided lb, const void* b, u8* m, i64 n) {
    FOR_EACH(i, n) {
        double x = load_f64(dt, a, strided_at(la, i)), y = load_f64(dt, b, strided_at(lb, i));
        bool r;
        switch (op) {
            case C_EQ: r = x == y; break;
            case C_NE: r = x != y; break;
            case C_LT: r = x < y; break;
            case C_LE: r = x <= y; break;
            case C_GT: r = x > y; break;
            default: r = x >= y; break;
        }
        m[i] = r ? 1 : 0;
    }
}

// Copies of elements of `bytes` bytes (1, 2, 4, 8): dtype-agnostic.
#define BY_SIZE(NAME, BODY)                                                                         \
    extern "C" __global__ void NAME##_b1 BODY(u8)                                                   \
    extern "C" __global__ void NAME##_b2 BODY(u16)                                                  \
    extern "C" __global__ void NAME##_b4 BODY(u32)                                                  \
    extern "C" __global__ void NAME##_b8 BODY(u64)

// z = cond ? a : b, views already broadcast.
#define WHERE_BODY(T)                                                                              \
    (Strided lc, const u8* c, Strided la, const T* a, Strided lb, const T* b, T* z, i64 n) {       \
        FOR_EACH(i, n) { z[i] = c[strided_at(lc, i)] ? a[strided_at(la, i)] : b[strided_at(lb, i)]; } \
    }
BY_SIZE(where_cond, WHERE_BODY)

// y (n, contiguous) = x viewed by lx.
#define COPY_BODY(T) \
    (Strided lx, const T* x, T* y, i64 n) { FOR_EACH(i, n) { y[i] = x[strided_at(lx, i)]; } }
BY_SIZE(copy_strided, COPY_BODY)

// dst viewed by ld = src viewed by ls (same shape).
#define COPY_INTO_BODY(T)                                                             \
    (Strided ld, T* dst, Strided ls, const T* src, i64 n) {                           \
        FOR_EACH(i, n) { dst[strided_at(ld, i)] = src[strided_at(ls, i)]; }           \
    }
BY_SIZE(copy_into, COPY_INTO_BODY)

// y (n, dtype dy) = x (dtype dx) viewed by lx.
extern "C" __global__ void cast_any(int dx, Strided lx, const void* x, int dy, void* y, i64 n) {
    FOR_EACH(i, n) { store_f64(dy, y, i, load_f64(dx, x, strided_at(lx, i))); }
}

// y (n, dtype dt) = v
extern "C" __global__ void fill_any(int dt, double v, void* y, i64 n) {
    FOR_EACH(i, n) { store_f64(dt, y, i, v); }
}

// C (rows, n) = bias (n) broadcast: the accumulator matmul_bias starts from.
extern "C" __global__ void fill_rows_f32(const float* bias, float* c, i64 rows, i64 n) {
    FOR_EACH(i, rows * n) { c[i] = bias[i % n]; }
}
