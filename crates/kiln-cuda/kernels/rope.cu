// rope.cu — rotary position embedding, rotate-half pairing (Su et al. 2021; LLaMA). Row r of x
// (…, T, D) is at position p = r mod T; with h = D/2:
//   y[i] = x[i]·cos[p,i] − x[i+h]·sin[p,i],  y[i+h] = x[i+h]·cos[p,i+h] + x[i]·sin[p,i+h].
// `transpose` applies the Jacobian's transpose (the backward):
//   dx[i] = dy[i]·cos[p,i] + dy[i+h]·sin[p,i+h],  dx[i+h] = dy[i+h]·cos[p,i+h] − dy[i]·sin[p,i].

extern "C" __global__ void rope_f32(const float* x, const float* cs, const float* sn, float* y, i64 n, i64 t, i64 d,
                                    int transpose) {
    const i64 h = d / 2;
    FOR_EACH(k, n * h) {
        const i64 r = k / h, i = k % h, p = r % t;
        const float a = x[r * d + i], b = x[r * d + i + h];
        const float c1 = cs[p * d + i], c2 = cs[p * d + i + h], s1 = sn[p * d + i], s2 = sn[p * d + i + h];
        if (transpose) {
            y[r * d + i] = a * c1 + b * s2;
            y[r * d + i + h] = b * c2 - a * s1;
        } else {
            y[r * d + i] = a * c1 - b * s1;
            y[r * d + i + h] = b * c2 + a * s2;
        }
    }
}
