// optim.cu — fused AdamW (Loshchilov & Hutter), one pass over parameter, gradient and moments:
//   m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
//   p = p − lr·(m̂/(√v̂ + ε) + λp).
// bc1 = 1−β₁ᵗ and bc2 = 1−β₂ᵗ come from the host.

extern "C" __global__ void adamw_f32(float* p, float* m, float* v, const float* g, i64 n, float lr, float b1, float b2,
                                     float eps, float wd, float bc1, float bc2) {
    FOR_EACH(i, n) {
        const float gi = g[i];
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float mh = mi / bc1, vh = vi / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}
